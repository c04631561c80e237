"""Adapters from public datasets (Hugging Face `datasets` layout) to vlthinker records.

Each adapter names one public dataset (hub id, config, default split, role) and owns a pure row
mapper ``row -> (Record, png_bytes)``. `load_rows` fetches the rows from the hub or from a local copy
(`--path`); `import_dataset` maps every row and writes a dataset directory atomically through
`vlthinker.records.write_dataset`, with a `stats.json` that counts what was kept and skipped.

Conventions shared by every adapter:

* ``id`` is ``f"{adapter}-{original id}"`` (or ``f"{adapter}-{split}-{row index}"`` when the dataset
  has no id column), reduced to ``[A-Za-z0-9._-]`` so it is a safe file name.
* The image is decoded and re-encoded as PNG with all metadata dropped (deterministic for a given
  Pillow version); it is written to ``images/<id>.png`` and ``image_sha256`` is the hash of those bytes.
* Multiple-choice items: ``choices`` holds the option texts in order, the question shows them as the
  benchmarks prompt them (``Choices:`` then ``(A) ...`` lines; MathVerse keeps its own ``A:...`` lines,
  which are part of its question text), and ``answer`` is always the option **letter** (``"A"``,
  ``"B"``, ...). ``answer_text`` keeps the option text when the dataset gives it. This is the mapping
  the OpenVLThinker evaluation script applies (MathVista's option texts become letters).
* ``caption`` is None and ``caption_exact`` False (captions come later from a VLM); ``difficulty`` is
  set only where the dataset has a level (MathVision ``level``, 1-5).
* Dataset-specific metadata is kept as extra record fields (``answer_type``, ``precision``, ``unit``,
  ``question_type``, ``level``, ``subject``, ``query`` — the benchmark's own prompt, ...).

A row that cannot be mapped (no image, empty question or answer, an answer that is not one of the
options) raises `DatasetError` naming the adapter, the row index and id, and the problem.

The adapters (column layouts from the ``dataset_info.features`` of each hub card, and from the
evaluation code of the OpenVLThinker repository for how the benchmarks are prompted and graded):

============  =====================================  =========================  ========  =====
adapter       hub id                                 config                     split     role
============  =====================================  =========================  ========  =====
geometry3k    hiyouga/geometry3k                     (default)                  train     train
figureqa      lmms-lab/LLaVA-OneVision-Data          FigureQA(MathV360K)        train     train
tabmwp        lmms-lab/LLaVA-OneVision-Data          TabMWP(MathV360K)          train     train
clevr         lmms-lab/LLaVA-OneVision-Data          CLEVR-Math(MathV360K)      train     train
superclevr    lmms-lab/LLaVA-OneVision-Data          Super-CLEVR(MathV360K)     train     train
mathvista     AI4Math/MathVista                      (default)                  testmini  eval
mathverse     AI4Math/MathVerse                      testmini                   testmini  eval
mathvision    MathLLMs/MathVision                    (default)                  test      eval
============  =====================================  =========================  ========  =====

FigureQA, TabMWP and CLEVR have no official Hugging Face copy with an Image column; the training
sources the paper lists (FigureQA, Geometry3K, TabMWP, CLEVR, Super-CLEVR, GEOS, ...) are the
MathV360K (Math-LLaVA) subsets, which LLaVA-OneVision-Data publishes one config each, single-turn,
in one layout: ``id``, ``image``, ``conversations`` [{"from": "human"|"gpt", "value"}],
``data_source``. MathVision's ``test`` split (3040 items) is the "full" set the paper reports
(24.0 -> 25.3); ``split="testmini"`` gives the 304-item subset.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from vlthinker.errors import ConfigError, DatasetError, SourceUnavailableError
from vlthinker.records import IMAGES_DIR, Record, sha256_bytes, write_dataset

if TYPE_CHECKING:
    from datasets import Dataset

Role = Literal["train", "eval"]
Row = Mapping[str, Any]
Progress = Callable[[int, int | None], None]

ANSWER_FORMAT = (
    "multiple-choice answers are option letters (A, B, ...); `choices` holds the option texts in order"
)
MATHV360K_ID = "lmms-lab/LLaVA-OneVision-Data"
MATHV360K_CARD = "https://huggingface.co/datasets/lmms-lab/LLaVA-OneVision-Data"
VISION_ONLY_QUESTION = "According to the question shown in the image, answer the question."
MAX_SKIPPED_LISTED = 1000

_RESERVED_FIELDS = frozenset(Record.model_fields)
_SAFE_ID_RE = re.compile(r"[^A-Za-z0-9._-]+")
_SLUG_RE = re.compile(r"[^a-z0-9]+")
_LLAVA_IMAGE_TOKEN_RE = re.compile(r"<image>")
_CHOICES_HEADER_RE = re.compile(r"(?:^|\n)[ \t]*Choices:[ \t]*(?:\n|$)")
_CHOICE_LINE_RE = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])\s*[:.)])\s*(.*?)\s*$")
_LETTER_RE = re.compile(r"\(?([A-Za-z])\)?\.?")
_ANSWER_PREFIX_RE = re.compile(r"^\s*the\s+answer\s+is\s*:?\s*", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------
# Adapter registry types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowContext:
    """Where a row comes from: used for ids, the split label and error messages."""

    adapter: str
    index: int
    split: str
    base_dir: Path | None = None  # resolves relative image paths of local json/jsonl copies

    def fail(self, problem: str, original_id: Any = None) -> DatasetError:
        where = f"row {self.index}" if original_id in (None, "") else f"row {self.index} (id {original_id!r})"
        return DatasetError(f"{self.adapter}: {where}: {problem}")


Mapper = Callable[[Row, RowContext], tuple[Record, bytes]]


@dataclass(frozen=True)
class Adapter:
    """One public dataset: where to fetch it and how to map its rows to records."""

    name: str
    hub_id: str
    split: str
    config: str | None
    role: Role
    task: str
    columns: tuple[str, ...]
    card: str
    mapper: Mapper

    @property
    def hub_ref(self) -> str:
        return self.hub_id if self.config is None else f"{self.hub_id} (config {self.config!r})"

    def map_row(
        self, row: Row, index: int = 0, split: str | None = None, base_dir: Path | None = None
    ) -> tuple[Record, bytes]:
        """Map one row; anything that goes wrong becomes a DatasetError naming this row."""
        ctx = RowContext(self.name, index, split or self.split, base_dir)
        try:
            return self.mapper(row, ctx)
        except DatasetError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OSError) as exc:
            raise ctx.fail(f"cannot be mapped ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------------------


def safe_id(adapter: str, original: Any, ctx: RowContext) -> str:
    """``adapter-original`` with anything outside ``[A-Za-z0-9._-]`` collapsed to ``_``."""
    raw = str(original).strip() if original is not None else ""
    if not raw:
        raw = f"{ctx.split}-{ctx.index}"
    cleaned = _SAFE_ID_RE.sub("_", raw).strip("_") or f"{ctx.split}-{ctx.index}"
    return f"{adapter}-{cleaned}"


def slug(text: Any, default: str) -> str:
    value = _SLUG_RE.sub("_", str(text or "").lower()).strip("_")
    return value or default


def letter(index: int) -> str:
    return chr(ord("A") + index)


def text_of(value: Any) -> str:
    """A string column's text, stripped; None (a null cell) is the empty string."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value).strip()


def render_choices(question: str, choices: Sequence[str]) -> str:
    """The MathVista/OpenVLThinker way of showing options: ``Choices:`` then ``(A) text`` lines."""
    lines = [f"({letter(i)}) {choice}" for i, choice in enumerate(choices)]
    return f"{question}\nChoices:\n" + "\n".join(lines)


def split_choices(text: str) -> tuple[str, list[str] | None]:
    """Split ``question\\nChoices:\\n(A) x\\n(B) y`` (or ``A:x`` / ``A. x`` lines) into parts.

    Returns the text before the last ``Choices:`` line and the option texts, or (text, None) when
    there is no well-formed, A-B-C-ordered option list.
    """
    headers = list(_CHOICES_HEADER_RE.finditer(text))
    if not headers:
        return text.strip(), None
    header = headers[-1]
    options: list[str] = []
    for line in text[header.end() :].splitlines():
        if not line.strip():
            continue
        match = _CHOICE_LINE_RE.match(line)
        if match is None:
            return text.strip(), None
        if (match.group(1) or match.group(2)) != letter(len(options)):
            return text.strip(), None
        options.append(match.group(3))
    if not options:
        return text.strip(), None
    return text[: header.start()].strip(), options


def answer_letter(answer: str, choices: Sequence[str] | None) -> str | None:
    """The option letter an answer names: a letter (``B``, ``(B)``, ``B.``) or an option's exact text."""
    count = len(choices) if choices else 26
    match = _LETTER_RE.fullmatch(answer.strip())
    if match is not None:
        index = ord(match.group(1).upper()) - ord("A")
        if 0 <= index < count:
            return letter(index)
    if choices:
        for index, choice in enumerate(choices):
            if str(choice).strip() == answer.strip():
                return letter(index)
    return None


def clean_extras(extras: Mapping[str, Any]) -> dict[str, Any]:
    """Drop empty values (None, NaN, "", [], {}) so records stay lean and JSON stays NaN-free."""
    kept: dict[str, Any] = {}
    for key, value in extras.items():
        if key in _RESERVED_FIELDS:
            raise ValueError(f"extra field {key!r} would overwrite a Record field")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, str | list | tuple | dict) and len(value) == 0:
            continue
        kept[key] = list(value) if isinstance(value, tuple) else value
    return kept


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def _open_image(value: Any, ctx: RowContext, original_id: Any) -> Image.Image:
    """Accept what `datasets` yields for an Image feature (PIL image, {"bytes", "path"}) or raw data."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, list | tuple):
        if not value:
            raise ctx.fail("has no image (empty image list)", original_id)
        return _open_image(value[0], ctx, original_id)
    if isinstance(value, bytes | bytearray | memoryview):
        if not value:
            raise ctx.fail("has no image (empty image bytes)", original_id)
        return Image.open(io.BytesIO(bytes(value)))
    if isinstance(value, Mapping):
        data = value.get("bytes")
        if data:
            return _open_image(data, ctx, original_id)
        return _open_image(value.get("path"), ctx, original_id)
    if isinstance(value, str | os.PathLike) and str(value).strip():
        path = Path(value)
        if not path.is_absolute() and ctx.base_dir is not None:
            path = ctx.base_dir / path
        if not path.is_file():
            raise ctx.fail(f"image file {str(value)!r} not found", original_id)
        return Image.open(path)
    raise ctx.fail("has no image", original_id)


def _png_ready(image: Image.Image) -> Image.Image:
    """Convert to a mode PNG stores losslessly; colour-key transparency becomes an alpha channel."""
    if "transparency" in image.info and image.mode in ("P", "L", "RGB", "LA", "PA"):
        return image.convert("RGBA")
    if image.mode in ("RGB", "RGBA", "L", "LA", "I;16"):
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("P", "PA"):
        return image.convert("RGBA" if image.mode == "PA" else "RGB")
    if image.mode in ("RGBa", "La"):
        return image.convert("RGBA")
    return image.convert("RGB")


def encode_png(image: Image.Image) -> bytes:
    """Deterministic PNG bytes: pixels only (no text chunks, ICC profile, dpi or EXIF)."""
    image.load()
    ready = _png_ready(image)
    clean = Image.frombytes(ready.mode, ready.size, ready.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def image_png(value: Any, ctx: RowContext, original_id: Any = None) -> bytes:
    try:
        image = _open_image(value, ctx, original_id)
        return encode_png(image)
    except DatasetError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ctx.fail(f"image cannot be decoded ({type(exc).__name__}: {exc})", original_id) from None


def first_image(row: Row, columns: Sequence[str]) -> Any:
    """The first non-empty value among image columns (e.g. MathVista's decoded_image, then image)."""
    for column in columns:
        value = row.get(column)
        if value is not None and not (isinstance(value, str | list | tuple) and len(value) == 0):
            return value
    return None


# --------------------------------------------------------------------------------------------------
# Record assembly
# --------------------------------------------------------------------------------------------------


def make_record(
    ctx: RowContext,
    *,
    original_id: Any,
    image: Any,
    task: str,
    question: str,
    answer: str,
    choices: Sequence[str] | None = None,
    difficulty: int | None = None,
    extras: Mapping[str, Any] | None = None,
) -> tuple[Record, bytes]:
    """Check the parts every adapter needs, encode the image and build the Record."""
    if not question.strip():
        raise ctx.fail("empty question", original_id)
    if not answer.strip():
        raise ctx.fail("empty answer", original_id)
    png = image_png(image, ctx, original_id)
    record_id = safe_id(ctx.adapter, original_id, ctx)
    try:
        record = Record(
            id=record_id,
            source=ctx.adapter,
            task=task,
            image=f"{IMAGES_DIR}/{record_id}.png",
            image_sha256=sha256_bytes(png),
            question=question.strip(),
            answer=answer.strip(),
            split=ctx.split,
            caption=None,
            caption_exact=False,
            difficulty=difficulty,
            choices=list(choices) if choices else None,
            **clean_extras(extras or {}),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<record>"
        raise ctx.fail(f"field {field!r}: {first['msg']}", original_id) from None
    return record, png


def multiple_choice_answer(
    ctx: RowContext, original_id: Any, answer: str, choices: Sequence[str] | None
) -> tuple[str, str | None]:
    """(letter, option text or None) for a multiple-choice answer, or a DatasetError naming the row."""
    found = answer_letter(answer, choices)
    if found is None:
        shown = f" (options: {list(choices)!r})" if choices else ""
        raise ctx.fail(
            f"multiple-choice answer {answer!r} is not an option letter or text{shown}", original_id
        )
    option = choices[ord(found) - ord("A")] if choices else None
    return found, option


# --------------------------------------------------------------------------------------------------
# Row mappers (one per dataset layout)
# --------------------------------------------------------------------------------------------------


def map_geometry3k(row: Row, ctx: RowContext) -> tuple[Record, bytes]:
    """hiyouga/geometry3k: ``images`` (list of Image), ``problem`` ("<image>..."), ``answer``, ``id``.

    Newer revisions of the card add ``choices`` (the four options) and ``ground_truth``; the item is
    kept free-form as EasyR1 trains it (answer = the option value, e.g. ``"2\\sqrt{221}"``), and the
    options are kept as ``source_choices`` / ``source_ground_truth``.
    """
    original_id = row.get("id")
    question = _LLAVA_IMAGE_TOKEN_RE.sub("", text_of(row.get("problem"))).strip()
    return make_record(
        ctx,
        original_id=original_id,
        image=first_image(row, ("images", "image")),
        task="geometry",
        question=question,
        answer=text_of(row.get("answer")),
        extras={
            "source_choices": [str(c) for c in row.get("choices") or []],
            "source_ground_truth": text_of(row.get("ground_truth")),
        },
    )


def parse_mathv360k_prompt(text: str) -> tuple[str | None, str, list[str] | None]:
    """Split a MathV360K human turn into (hint, question, choices).

    The turn reads ``<image>\\nHint: ...\\nQuestion: ...`` optionally followed by ``Choices:`` and
    ``(A) ...`` lines (the MathVista query format Math-LLaVA reused).
    """
    body = _LLAVA_IMAGE_TOKEN_RE.sub("", text).strip()
    hint = None
    lines = body.splitlines()
    if lines and lines[0].lstrip().startswith("Hint:"):
        hint = lines[0].split("Hint:", 1)[1].strip() or None
        body = "\n".join(lines[1:]).strip()
    if body.startswith("Question:"):
        body = body[len("Question:") :].strip()
    question, choices = split_choices(body)
    return hint, question, choices


def _conversation_pair(row: Row, ctx: RowContext, original_id: Any) -> tuple[str, str]:
    turns = row.get("conversations") or []
    human = next((t for t in turns if str(t.get("from", "")).lower() in ("human", "user")), None)
    gpt = next((t for t in turns if str(t.get("from", "")).lower() in ("gpt", "assistant")), None)
    if human is None or gpt is None:
        raise ctx.fail("conversations need a human turn and a gpt turn", original_id)
    return text_of(human.get("value")), text_of(gpt.get("value"))


def map_mathv360k(row: Row, ctx: RowContext, task: str) -> tuple[Record, bytes]:
    """MathV360K subsets in lmms-lab/LLaVA-OneVision-Data: ``id``, ``image`` (Image),
    ``conversations`` (list of {"from", "value"}: human prompt, gpt ``"The answer is X"``),
    ``data_source``. Only the first human/gpt pair is used (the subsets are single-turn).
    """
    original_id = row.get("id")
    prompt, reply = _conversation_pair(row, ctx, original_id)
    hint, question, choices = parse_mathv360k_prompt(prompt)
    answer = _ANSWER_PREFIX_RE.sub("", reply).strip()
    extras: dict[str, Any] = {"hint": hint, "data_source": text_of(row.get("data_source"))}
    if choices:
        answer, option = multiple_choice_answer(ctx, original_id, answer, choices)
        extras |= {"question_type": "multi_choice", "answer_text": option}
        question = render_choices(question, choices)
    else:
        extras["question_type"] = "free_form"
    return make_record(
        ctx,
        original_id=original_id,
        image=row.get("image"),
        task=task,
        question=question,
        answer=answer,
        choices=choices,
        extras=extras,
    )


def _mathv360k_mapper(task: str) -> Mapper:
    def mapper(row: Row, ctx: RowContext) -> tuple[Record, bytes]:
        return map_mathv360k(row, ctx, task)

    return mapper


def map_mathvista(row: Row, ctx: RowContext) -> tuple[Record, bytes]:
    """AI4Math/MathVista: ``pid``, ``question``, ``decoded_image`` (Image; ``image`` is a path string),
    ``choices`` (list or null), ``unit``, ``precision``, ``answer`` (option *text* for multi_choice),
    ``question_type``, ``answer_type``, ``metadata`` (struct: task, category, context, grade,
    language, skills, source, ...), ``query`` (the benchmark prompt with its hint).
    """
    original_id = row.get("pid")
    metadata = row.get("metadata") or {}
    question = text_of(row.get("question"))
    unit = text_of(row.get("unit"))
    if question and unit:
        question = f"{question} (Unit: {unit})"
    answer = text_of(row.get("answer"))
    choices = [str(c) for c in row.get("choices") or []] or None
    question_type = text_of(row.get("question_type"))
    extras: dict[str, Any] = {
        "question_type": question_type,
        "answer_type": text_of(row.get("answer_type")),
        "precision": row.get("precision"),
        "unit": unit,
        "query": text_of(row.get("query")),
        "category": text_of(metadata.get("category")),
        "context": text_of(metadata.get("context")),
        "grade": text_of(metadata.get("grade")),
        "language": text_of(metadata.get("language")),
        "skills": [str(s) for s in metadata.get("skills") or []],
        "source_dataset": text_of(metadata.get("source")),
    }
    if question_type == "multi_choice" or (choices and question_type != "free_form"):
        if answer:
            answer, option = multiple_choice_answer(ctx, original_id, answer, choices)
            extras["answer_text"] = option
        if question and choices:
            question = render_choices(question, choices)
    else:
        choices = None
    return make_record(
        ctx,
        original_id=original_id,
        image=first_image(row, ("decoded_image", "image")),
        task=slug(metadata.get("task"), "math_vqa"),
        question=question,
        answer=answer,
        choices=choices,
        extras=extras,
    )


def map_mathverse(row: Row, ctx: RowContext) -> tuple[Record, bytes]:
    """AI4Math/MathVerse (config testmini): ``sample_index``, ``problem_index``, ``problem_version``,
    ``question`` (options inline as ``Choices:`` + ``A:...`` lines), ``image`` (Image), ``answer``
    (a letter for multi-choice), ``question_type`` ("multi-choice"/"free-form"), ``metadata``
    (struct: split, source, subject, subfield), ``query_wo``, ``query_cot``, ``question_for_eval``.

    "Vision Only" items have an empty ``question`` (the text is in the image); they get a fixed
    instruction (`VISION_ONLY_QUESTION`) and ``question_in_image: true``.
    """
    original_id = row.get("sample_index")
    metadata = row.get("metadata") or {}
    version = text_of(row.get("problem_version"))
    question = text_of(row.get("question"))
    extras: dict[str, Any] = {
        "question_type": text_of(row.get("question_type")),
        "problem_index": text_of(row.get("problem_index")),
        "problem_version": version,
        "subject": text_of(metadata.get("subject")),
        "subfield": text_of(metadata.get("subfield")),
        "source_dataset": text_of(metadata.get("source")),
        "query": text_of(row.get("query_cot")),
        "question_for_eval": text_of(row.get("question_for_eval")),
    }
    if not question and version.lower() == "vision only":
        question = VISION_ONLY_QUESTION
        extras["question_in_image"] = True
    _, choices = split_choices(question)
    answer = text_of(row.get("answer"))
    if extras["question_type"] == "multi-choice" and answer:
        answer, option = multiple_choice_answer(ctx, original_id, answer, choices)
        extras["answer_text"] = option
    else:
        choices = None
    return make_record(
        ctx,
        original_id=original_id,
        image=row.get("image"),
        task=slug(metadata.get("subject"), "math"),
        question=question,
        answer=answer,
        choices=choices,
        extras=extras,
    )


def map_mathvision(row: Row, ctx: RowContext) -> tuple[Record, bytes]:
    """MathLLMs/MathVision: ``id``, ``question``, ``options`` (list; empty for free-form),
    ``image`` (path string), ``decoded_image`` (Image), ``answer`` (a letter when there are options),
    ``solution``, ``level`` (1-5), ``subject``.
    """
    original_id = row.get("id")
    question = text_of(row.get("question"))
    choices = [str(c) for c in row.get("options") or []] or None
    answer = text_of(row.get("answer"))
    level = _level(row.get("level"))
    extras: dict[str, Any] = {"level": level, "subject": text_of(row.get("subject"))}
    if choices:
        extras["question_type"] = "multi_choice"
        if answer:
            answer, option = multiple_choice_answer(ctx, original_id, answer, choices)
            extras["answer_text"] = option
        if question:
            question = render_choices(question, choices)
    else:
        extras["question_type"] = "free_form"
    return make_record(
        ctx,
        original_id=original_id,
        image=first_image(row, ("decoded_image", "image")),
        task=slug(row.get("subject"), "math"),
        question=question,
        answer=answer,
        choices=choices,
        difficulty=level,
        extras=extras,
    )


def _level(value: Any) -> int | None:
    """MathVision's level as a positive int (the card types it int64; tolerate "3" and 3.0)."""
    try:
        level = int(float(str(value).strip()))
    except (TypeError, ValueError):
        return None
    return level if level >= 1 else None


# --------------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------------


def _mathv360k(name: str, config: str, task: str) -> Adapter:
    return Adapter(
        name=name,
        hub_id=MATHV360K_ID,
        split="train",
        config=config,
        role="train",
        task=task,
        columns=("id", "image", "conversations", "data_source"),
        card=MATHV360K_CARD,
        mapper=_mathv360k_mapper(task),
    )


ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        Adapter(
            name="geometry3k",
            hub_id="hiyouga/geometry3k",
            split="train",
            config=None,
            role="train",
            task="geometry",
            columns=("images", "problem", "answer", "id", "choices", "ground_truth"),
            card="https://huggingface.co/datasets/hiyouga/geometry3k",
            mapper=map_geometry3k,
        ),
        _mathv360k("figureqa", "FigureQA(MathV360K)", "figure_qa"),
        _mathv360k("tabmwp", "TabMWP(MathV360K)", "table_mwp"),
        _mathv360k("clevr", "CLEVR-Math(MathV360K)", "clevr_math"),
        _mathv360k("superclevr", "Super-CLEVR(MathV360K)", "super_clevr"),
        Adapter(
            name="mathvista",
            hub_id="AI4Math/MathVista",
            split="testmini",
            config=None,
            role="eval",
            task="math_vqa",
            columns=(
                "pid",
                "question",
                "decoded_image",
                "choices",
                "unit",
                "precision",
                "answer",
                "question_type",
                "answer_type",
                "metadata",
                "query",
            ),
            card="https://huggingface.co/datasets/AI4Math/MathVista",
            mapper=map_mathvista,
        ),
        Adapter(
            name="mathverse",
            hub_id="AI4Math/MathVerse",
            split="testmini",
            config="testmini",
            role="eval",
            task="math",
            columns=(
                "sample_index",
                "problem_index",
                "problem_version",
                "question",
                "image",
                "answer",
                "question_type",
                "metadata",
                "query_cot",
                "question_for_eval",
            ),
            card="https://huggingface.co/datasets/AI4Math/MathVerse",
            mapper=map_mathverse,
        ),
        Adapter(
            name="mathvision",
            hub_id="MathLLMs/MathVision",
            split="test",
            config=None,
            role="eval",
            task="math",
            columns=("id", "question", "options", "decoded_image", "answer", "level", "subject"),
            card="https://huggingface.co/datasets/MathLLMs/MathVision",
            mapper=map_mathvision,
        ),
    )
}


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigError(f"unknown dataset adapter {name!r}; known adapters: {known}") from None


# --------------------------------------------------------------------------------------------------
# Loading rows: a local copy or the hub
# --------------------------------------------------------------------------------------------------

_DATA_EXTENSIONS = (".parquet", ".arrow", ".jsonl", ".json")
_NOT_DATA_FILES = frozenset({"dataset_info.json", "state.json", "dataset_dict.json"})
_SPLIT_SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-\d{5}-of-\d{5}")
_COMMON_SPLITS = frozenset({"train", "test", "testmini", "validation", "valid", "val", "dev"})
_TRUE = frozenset({"1", "ON", "YES", "TRUE"})
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def load_rows(
    name: str,
    split: str | None = None,
    path: str | Path | None = None,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """The rows of an adapter's dataset as a `datasets.Dataset` (first `limit` rows if given).

    With `path`: a directory written by ``save_to_disk`` (a Dataset, or a DatasetDict holding
    `split`), a parquet/arrow/jsonl/json file, or a directory of them (e.g. a ``git clone`` of the hub
    repository: files named after the split, such as ``data/testmini-00000-of-00001.parquet`` or
    ``testmini.parquet``, are picked; a sub-directory named like the adapter's config is entered).
    Without `path`: ``datasets.load_dataset(hub_id, config, split=split)``; when the hub cannot be
    reached this raises `SourceUnavailableError` quickly instead of retrying for long.
    """
    adapter = get_adapter(name)
    split = split or adapter.split
    datasets = _import_datasets(adapter)
    if path is not None:
        rows = _load_local(adapter, Path(path), split, datasets, cache_dir)
    else:
        rows = _load_hub(adapter, split, datasets, cache_dir)
    if limit is not None:
        if limit < 0:
            raise DatasetError(f"{adapter.name}: limit must be >= 0, got {limit}")
        rows = rows.select(range(min(limit, len(rows))))
    return rows


def _import_datasets(adapter: Adapter) -> Any:
    try:
        import datasets
    except ImportError:
        raise SourceUnavailableError(
            f"{adapter.name}: loading {adapter.hub_ref} needs the `datasets` package "
            "(pip install 'vlthinker[train]')"
        ) from None
    return datasets


def _load_local(adapter: Adapter, path: Path, split: str, datasets: Any, cache_dir: Any) -> Dataset:
    if not path.exists():
        raise SourceUnavailableError(f"{adapter.name}: local copy {str(path)!r} does not exist")
    if path.is_dir() and adapter.config and (path / adapter.config).is_dir():
        path = path / adapter.config
    try:
        if path.is_dir() and (path / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            if split not in loaded:
                raise DatasetError(
                    f"{adapter.name}: {path} has no split {split!r} (it has: {', '.join(sorted(loaded))})"
                )
            return loaded[split]
        if path.is_dir() and (path / "state.json").is_file():
            return datasets.load_from_disk(str(path))
        files = [path] if path.is_file() else _split_files(adapter, path, split)
        return _read_files(files, datasets, cache_dir)
    except DatasetError:
        raise
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{adapter.name}: cannot read {path}: {type(exc).__name__}: {exc}") from None


def _names_split(relative: Path, split: str) -> bool:
    stem = relative.name.split(".", 1)[0]
    shard = _SPLIT_SHARD_RE.match(stem)
    return stem == split or (shard is not None and shard["split"] == split) or split in relative.parts[:-1]


def _looks_split_named(relative: Path) -> bool:
    stem = relative.name.split(".", 1)[0]
    return bool(_SPLIT_SHARD_RE.match(stem)) or stem in _COMMON_SPLITS


def _split_files(adapter: Adapter, root: Path, split: str) -> list[Path]:
    """Data files of `split` under `root`, preferring parquet, then arrow, jsonl, json.

    A directory organised by split (hub shard names, ``train.parquet``...) must have files for
    `split`; a directory of arbitrarily named files is read whole.
    """
    found = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.suffix in _DATA_EXTENSIONS
        and p.name not in _NOT_DATA_FILES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    for extension in _DATA_EXTENSIONS:
        candidates = [p for p in found if p.suffix == extension]
        if not candidates:
            continue
        chosen = [p for p in candidates if _names_split(p.relative_to(root), split)]
        if chosen:
            return chosen
        if not any(_looks_split_named(p.relative_to(root)) for p in candidates):
            return candidates
        names = ", ".join(str(p.relative_to(root)) for p in candidates[:10])
        raise DatasetError(
            f"{adapter.name}: no {extension} files for split {split!r} under {root} (found: {names})"
        )
    kinds = ", ".join(_DATA_EXTENSIONS)
    raise DatasetError(f"{adapter.name}: no data files ({kinds}) and no save_to_disk dataset under {root}")


def _read_files(files: list[Path], datasets: Any, cache_dir: Any) -> Dataset:
    suffixes = {p.suffix for p in files}
    if len(suffixes) != 1:
        raise DatasetError(f"mixed data file types {sorted(suffixes)}: pass one file type")
    suffix = suffixes.pop()
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(p) for p in files]
        return datasets.Dataset(pa.concat_tables(tables) if len(tables) > 1 else tables[0])
    if suffix == ".arrow":
        return datasets.concatenate_datasets([datasets.Dataset.from_file(str(p)) for p in files])
    return datasets.load_dataset(
        "json", data_files=[str(p) for p in files], split="train", cache_dir=_str_or_none(cache_dir)
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _offline_requested() -> bool:
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(name, "").upper() in _TRUE for name in names)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub host resolves (DNS) within `timeout` s; assumed yes behind a proxy."""
    if any(os.environ.get(var) for var in _PROXY_VARS):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    if not host:
        return True
    result: list[bool] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, 443)
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


@contextlib.contextmanager
def _forced_offline(enabled: bool) -> Iterator[None]:
    """Make `datasets`/`huggingface_hub` use only their caches, even if imported before the env was set."""
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def _load_hub(adapter: Adapter, split: str, datasets: Any, cache_dir: Any) -> Dataset:
    reason = ""
    offline = _offline_requested()
    if offline:
        reason = "offline mode is set (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE) and it is not in the local cache"
    elif not _hub_reachable():
        offline = True
        reason = "the hub host does not resolve (no network?) and it is not in the local cache"
    try:
        with _forced_offline(offline):
            return datasets.load_dataset(
                adapter.hub_id, adapter.config, split=split, cache_dir=_str_or_none(cache_dir)
            )
    except OSError as exc:
        detail = reason or f"{type(exc).__name__}: {exc}"
        raise SourceUnavailableError(
            f"{adapter.name}: could not fetch {adapter.hub_ref} split {split!r} from the Hugging Face hub: "
            f"{detail}. Get a copy where the hub is reachable (`git clone "
            f"https://huggingface.co/datasets/{adapter.hub_id}`, or "
            "`datasets.load_dataset(...).save_to_disk(DIR)`) and pass it with --path DIR."
        ) from None
    except ValueError as exc:
        raise DatasetError(f"{adapter.name}: cannot load {adapter.hub_ref} split {split!r}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# Import: rows -> dataset directory
# --------------------------------------------------------------------------------------------------


def _base_dir(path: str | Path | None) -> Path | None:
    if path is None:
        return None
    local = Path(path)
    return local if local.is_dir() else local.parent


def import_dataset(
    name: str,
    output_dir: str | Path,
    split: str | None = None,
    path: str | Path | None = None,
    limit: int | None = None,
    skip_invalid: bool = False,
    progress: Progress | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Map an adapter's rows to records and write `output_dir` atomically (records, images, stats).

    A row that cannot be mapped stops the import with its DatasetError (nothing is written), unless
    `skip_invalid` is set: then it is counted and listed with its reason in ``stats.json``.
    `progress(rows_done, rows_total)` is called after every row. `limit` caps the rows read.
    """
    adapter = get_adapter(name)
    split = split or adapter.split
    rows = load_rows(name, split=split, path=path, limit=limit, cache_dir=cache_dir)
    total = len(rows)
    base_dir = _base_dir(path)
    stats: dict[str, Any] = {
        "adapter": adapter.name,
        "source": adapter.name,
        "role": adapter.role,
        "hub_id": adapter.hub_id,
        "config": adapter.config,
        "split": split,
        "origin": "hub" if path is None else "local",
        "local_name": None if path is None else Path(path).name,
        "limit": limit,
        "answer_format": ANSWER_FORMAT,
        "image_format": "png",
    }
    # write_dataset consumes the generator before it writes stats.json, so the counts below are
    # filled in by the time they are written (tests check them).
    items = _mapped_items(adapter, rows, split, base_dir, skip_invalid, progress, total, stats)
    return write_dataset(output_dir, items, stats)


def _mapped_items(
    adapter: Adapter,
    rows: Any,
    split: str,
    base_dir: Path | None,
    skip_invalid: bool,
    progress: Progress | None,
    total: int,
    stats: dict[str, Any],
) -> Iterator[tuple[Record, bytes]]:
    seen: set[str] = set()
    tasks: Counter[str] = Counter()
    skipped: list[dict[str, Any]] = []
    skipped_count = multiple_choice = written = 0
    for index, row in enumerate(rows):
        try:
            record, png = adapter.map_row(row, index=index, split=split, base_dir=base_dir)
            if record.id in seen:
                raise DatasetError(f"{adapter.name}: row {index}: duplicate record id {record.id!r}")
        except DatasetError as exc:
            if not skip_invalid:
                raise
            skipped_count += 1
            if len(skipped) < MAX_SKIPPED_LISTED:
                skipped.append({"index": index, "reason": str(exc)})
        else:
            seen.add(record.id)
            tasks[record.task] += 1
            multiple_choice += record.choices is not None
            written += 1
            yield record, png
        if progress is not None:
            progress(index + 1, total)
    stats |= {
        "rows_read": total,
        "records": written,
        "skipped": skipped_count,
        "skipped_rows": skipped,
        "multiple_choice": multiple_choice,
        "tasks": dict(sorted(tasks.items())),
    }
    if written == 0:
        raise DatasetError(
            f"{adapter.name}: no records from {total} rows of {adapter.hub_ref} split {split!r}"
            + (f" ({skipped_count} skipped as invalid)" if skipped_count else "")
        )
