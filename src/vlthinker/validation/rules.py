"""The rules of each suite, as plain data: name, severity, description and the GE expectation to run.

A rule is either native (a GE expectation on a data column: uniqueness, lengths, ranges, regex) or
row-computed (a message column filled by `rows`/`contamination`, expected to be null). Severity
``critical`` fails validation; ``warning`` is reported without failing. This module imports nothing
from Great Expectations: `suites` turns the specs into expectation objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vlthinker.validation import images, rows
from vlthinker.validation.config import ValidationConfig

CRITICAL = "critical"
WARNING = "warning"

R_ROW_COUNT = "row_count"
R_ID_UNIQUE = "id_unique"
R_QUESTION = "question_nonempty"
R_ANSWER = "answer_nonempty"
R_PAIR_UNIQUE = "image_question_unique"
R_MIN_SIDE = "image_min_side"
R_MAX_SIDE = "image_max_side"
R_ASPECT = "image_aspect_ratio"
R_CAPTION = "caption_nonempty"
R_CAPTION_WORDS = "caption_words"
R_TRACE_WORDS = "trace_words"
R_REFLECTION = "reflection_markers"
R_PASS_RATE = "pass_rate_range"
R_SPLIT = "split_expected"
R_CONTAM_SHA = "contamination_sha256"
R_CONTAM_PHASH = "contamination_phash"
R_CONTAM_QI = "contamination_question_image"

TRAINING_SPLITS = ("train",)
EVAL_SPLITS = ("heldout", "test", "testmini", "validation", "val")


@dataclass(frozen=True)
class Rule:
    """One named check and the GE expectation (class name + kwargs) that enforces it."""

    name: str
    severity: str
    description: str
    expectation: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column")


def _row(name: str, description: str, severity: str = CRITICAL) -> Rule:
    """A row-computed rule: its message column must be null."""
    return Rule(name, severity, description, "ExpectColumnValuesToBeNull", {"column": name})


def _between(name: str, column: str, description: str, low: float | None, high: float | None) -> Rule:
    return Rule(
        name,
        CRITICAL,
        description,
        "ExpectColumnValuesToBeBetween",
        {"column": column, "min_value": low, "max_value": high},
    )


def common_rules(config: ValidationConfig) -> list[Rule]:
    """Rules every dataset kind shares: parsing, fields, identity, duplicates, images."""
    return [
        Rule(
            R_ROW_COUNT,
            CRITICAL,
            f"the dataset holds at least {config.min_records} record(s)",
            "ExpectTableRowCountToBeBetween",
            {"min_value": config.min_records},
        ),
        _row(rows.R_PARSE, "every line is UTF-8 JSON holding one object"),
        _row(rows.R_FIELDS, "required fields are present with the right types (record contract + kind)"),
        Rule(
            R_ID_UNIQUE, CRITICAL, "record ids are unique", "ExpectColumnValuesToBeUnique", {"column": "id"}
        ),
        Rule(
            R_QUESTION,
            CRITICAL,
            "the question is not blank",
            "ExpectColumnValueLengthsToBeBetween",
            {"column": "question", "min_value": 1},
        ),
        Rule(
            R_ANSWER,
            CRITICAL,
            "the ground-truth answer is not blank",
            "ExpectColumnValueLengthsToBeBetween",
            {"column": "answer", "min_value": 1},
        ),
        Rule(
            R_PAIR_UNIQUE,
            CRITICAL,
            "no two records share an image (sha256) and a normalized question",
            "ExpectCompoundColumnsToBeUnique",
            {"column_list": ["image_sha256", "question_key"]},
        ),
        _row(
            images.R_PATH, "the image path is relative and stays inside the dataset (no '..', no symlink out)"
        ),
        _row(images.R_EXISTS, "the image file exists and is a regular file"),
        _row(images.R_FILE_SIZE, f"the image file is at most {config.max_image_bytes:,} bytes"),
        _row(images.R_PIXELS, f"the image declares at most {config.max_image_pixels:,} pixels (bomb guard)"),
        _row(
            images.R_DECODES, "the image file is an image that decodes completely (not truncated or corrupt)"
        ),
        _row(rows.R_SHA, "image_sha256 equals the sha256 of the image file"),
        _between(
            R_MIN_SIDE,
            "image_min_side",
            f"no image side under {config.image_min_side} px",
            config.image_min_side,
            None,
        ),
        _between(
            R_MAX_SIDE,
            "image_max_side",
            f"no image side over {config.image_max_side} px",
            None,
            config.image_max_side,
        ),
        _between(
            R_ASPECT,
            "image_aspect_ratio",
            f"long side / short side at most {config.image_max_aspect_ratio:g}",
            None,
            config.image_max_aspect_ratio,
        ),
    ]


def caption_rules(config: ValidationConfig) -> list[Rule]:
    return [
        Rule(
            R_CAPTION,
            CRITICAL,
            "the caption is not blank",
            "ExpectColumnValueLengthsToBeBetween",
            {"column": "caption", "min_value": 1},
        ),
        _between(
            R_CAPTION_WORDS,
            "caption_words",
            f"captions hold {config.caption_min_words}-{config.caption_max_words} words",
            config.caption_min_words,
            config.caption_max_words,
        ),
    ]


def reflection_regex(markers: list[str]) -> str:
    return "|".join(re.escape(marker) for marker in markers)


def trace_rules(config: ValidationConfig) -> list[Rule]:
    out = [
        _row(rows.R_PROMPT, "the prompt is a user turn with exactly one image part and a text part"),
        _row(rows.R_COMPLETION, "the completion is one assistant message of text parts"),
        _row(rows.R_TRACE_FORMAT, "the completion is exactly <think>...</think><answer>...</answer>"),
        _row(rows.R_TRACE_ANSWER, "the trace's extracted answer grades equal to the ground truth"),
        _between(
            R_TRACE_WORDS,
            "trace_words",
            f"the <think> text holds {config.trace_min_words}-{config.trace_max_words} words",
            config.trace_min_words,
            config.trace_max_words,
        ),
        _row(rows.R_REASONING, "the reasoning field equals the completion's <think> text", WARNING),
    ]
    if config.reflection_markers:
        out.append(
            Rule(
                R_REFLECTION,
                CRITICAL,
                "no reflection marker is left in the trace: "
                + ", ".join(map(repr, config.reflection_markers)),
                "ExpectColumnValuesToNotMatchRegex",
                {"column": "trace", "regex": reflection_regex(config.reflection_markers)},
            )
        )
    return out


def rl_rules() -> list[Rule]:
    return [
        _row(rows.R_PROMPT, "the prompt is a user turn with exactly one image part and a text part"),
        _between(R_PASS_RATE, "pass_rate", "pass_rate lies in [0, 1]", 0.0, 1.0),
    ]


def split_rule(kind: str) -> Rule | None:
    allowed = (
        EVAL_SPLITS if kind == "eval" else TRAINING_SPLITS if kind in ("captioned", "sft", "rl") else None
    )
    if allowed is None:
        return None
    return Rule(
        R_SPLIT,
        WARNING,
        f"records of a {kind} dataset come from the split(s) {', '.join(allowed)}",
        "ExpectColumnValuesToBeInSet",
        {"column": "split", "value_set": list(allowed)},
    )


def contamination_rules() -> list[Rule]:
    return [
        _row(R_CONTAM_SHA, "no image is byte-identical (sha256) to an evaluation image"),
        _row(R_CONTAM_PHASH, "no image is a perceptual copy (re-encoded, resized) of an evaluation image"),
        _row(R_CONTAM_QI, "no record repeats an evaluation item (same image and normalized question)"),
    ]


def rules_for(kind: str, config: ValidationConfig, contamination: bool = False) -> list[Rule]:
    """The suite of `kind`, in report order."""
    out = common_rules(config)
    if kind == "captioned":
        out += caption_rules(config)
    elif kind == "sft":
        out += trace_rules(config)
    elif kind == "rl":
        out += rl_rules()
    if contamination:
        out += contamination_rules()
    split = split_rule(kind)
    if split is not None:
        out.append(split)
    out.append(_row(rows.R_TASK_BALANCE, "every task holds a fair share of the records", WARNING))
    return out


def frame_columns(rules: list[Rule]) -> list[str]:
    """Every column the suite reads, plus the identifying ones."""
    names = ["line", "ref", "id"]
    for rule in rules:
        for column in [rule.column, *rule.kwargs.get("column_list", [])]:
            if column and column not in names:
                names.append(column)
    return names
