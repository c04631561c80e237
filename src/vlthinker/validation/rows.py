"""Row-level checks that Great Expectations cannot express: parsing, field types, images, traces.

Each record (one line of ``records.jsonl``) becomes one flat row of plain values. A check that fails
writes its message into the column named after its rule (``None`` means passed or not applicable);
the GE suite then expects those columns to be null, so every check appears as a named expectation
with the failing records as its examples. Data columns (question, word counts, image sides, ...)
feed GE's own expectations. Checks that cannot run because an earlier one failed stay ``None``: a
line that is not JSON fails ``records_parse`` only, a missing image fails ``image_exists`` only.

Nothing in this module raises on bad data.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vlthinker.errors import DatasetError
from vlthinker.records import RECORDS_FILE, Record
from vlthinker.validation import images
from vlthinker.validation.config import ValidationConfig

# Rules computed here (column name == rule name).
R_PARSE = "records_parse"
R_FIELDS = "record_fields"
R_SHA = "image_sha256_matches"
R_PROMPT = "prompt_format"
R_COMPLETION = "completion_format"
R_TRACE_FORMAT = "trace_format"
R_TRACE_ANSWER = "trace_answer_correct"
R_REASONING = "reasoning_matches_trace"
R_TASK_BALANCE = "task_balance"

MAX_MESSAGE_CHARS = 300
MAX_SHOWN_VALUE = 80
_THINK_ANSWER = re.compile(r"\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*", re.S)
_ROLES = frozenset({"system", "user", "assistant"})


@dataclass
class Row:
    """One record's flat columns plus what the contamination guard needs (not put in the frame)."""

    values: dict[str, Any]
    facts: images.ImageFacts | None = None
    question_key: str | None = None


def short(value: Any, limit: int = MAX_SHOWN_VALUE) -> str:
    """A value as a short repr for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def normalize_question(question: str) -> str:
    """Lower case, single spaces, no trailing punctuation: the key for duplicate questions."""
    return re.sub(r"\s+", " ", question.strip().lower()).rstrip(" ?.!")


def word_count(text: str) -> int:
    return len(text.split())


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of every non-blank line."""
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if raw.strip():
                yield lineno, raw


def parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(payload, None) for a JSON object line; (None, reason) for anything else."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return None, "not valid JSON (nested too deeply)"
    if not isinstance(payload, dict):
        return None, f"a record must be a JSON object, got {type(payload).__name__}"
    return payload, None


def _reported_elsewhere(error: dict[str, Any]) -> bool:
    """Field errors that a more specific rule reports: the image path validator (`image_path_inside`)
    and blank question/answer (`question_nonempty`, `answer_nonempty`)."""
    loc, kind = tuple(error.get("loc", ())), error.get("type")
    return (loc == ("image",) and kind == "value_error") or (
        loc in (("question",), ("answer",)) and kind == "string_too_short"
    )


def _kind_field_errors(payload: dict[str, Any], kind: str) -> list[str]:
    errors: list[str] = []

    def need(name: str, types: tuple[type, ...], what: str) -> None:
        if name not in payload or payload[name] is None:
            errors.append(f"field {name!r}: required for {kind} datasets")
        elif not isinstance(payload[name], types) or isinstance(payload[name], bool):
            errors.append(f"field {name!r}: must be {what} (got {short(payload[name])})")

    if kind == "captioned":
        need("caption", (str,), "a string")
    if kind in ("sft", "rl"):
        need("prompt", (list,), "a list of messages")
    if kind == "sft":
        need("completion", (list,), "a list of messages")
        need("reasoning", (str,), "a string")
    if kind == "rl":
        need("pass_rate", (int, float), "a number")
        if isinstance(payload.get("pass_rate"), float) and not math.isfinite(payload["pass_rate"]):
            errors.append(f"field 'pass_rate': must be finite (got {payload['pass_rate']})")
    return errors


def field_errors(payload: dict[str, Any], kind: str) -> list[str]:
    """Every missing or mistyped field of the record contract and of `kind`, as messages."""
    errors: list[str] = []
    try:
        Record.model_validate(payload)
    except ValidationError as exc:
        for error in exc.errors():
            if _reported_elsewhere(error):
                continue
            name = ".".join(str(p) for p in error["loc"]) or "<record>"
            got = f" (got {short(error['input'])})" if error.get("type") != "missing" else ""
            errors.append(f"field {name!r}: {error['msg']}{got}")
    return errors + _kind_field_errors(payload, kind)


def _text(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return value.strip() if isinstance(value, str) else None


def prompt_problem(prompt: Any) -> str | None:
    """Why a conversational prompt is malformed, or None: messages with roles and typed parts."""
    if not isinstance(prompt, list) or not prompt:
        return "prompt must be a non-empty list of messages"
    n_images = 0
    has_text = False
    for index, message in enumerate(prompt):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            return f"prompt message {index} must be an object with a role in {sorted(_ROLES)}"
        content = message.get("content")
        if isinstance(content, str):
            has_text = has_text or bool(content.strip())
            continue
        if not isinstance(content, list) or not content:
            return f"prompt message {index}: content must be a string or a non-empty list of parts"
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image":
                n_images += 1
            elif kind == "text" and isinstance(part.get("text"), str):
                has_text = has_text or bool(part["text"].strip())
            else:
                return f"prompt message {index}: part {short(part)} is neither an image nor a text part"
    if prompt[-1].get("role") != "user":
        return "the last prompt message must come from the user"
    if n_images != 1:
        return f"prompt must hold exactly one image part (the record's image), found {n_images}"
    if not has_text:
        return "prompt holds no text"
    return None


def completion_text(completion: Any) -> tuple[str | None, str | None]:
    """(assistant text, None) of a one-message completion; (None, reason) when malformed."""
    if not isinstance(completion, list) or len(completion) != 1:
        return None, "completion must be a list holding exactly one assistant message"
    message = completion[0]
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return None, "the completion message must be an object with role 'assistant'"
    content = message.get("content")
    if isinstance(content, str):
        return content, None
    if not isinstance(content, list) or not content:
        return None, "completion content must be a string or a non-empty list of text parts"
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            return None, f"completion part {short(part)} is not a text part"
        texts.append(part["text"])
    return "".join(texts), None


def trace_checks(trace: str, payload: dict[str, Any], config: ValidationConfig) -> dict[str, Any]:
    """Format, word count, final-answer grading and reasoning consistency of one SFT completion."""
    from vlthinker.answers import extract_answer, format_ok, grade

    out: dict[str, Any] = {"trace": trace}
    if not format_ok(trace):
        out[R_TRACE_FORMAT] = (
            "completion is not exactly <think>reasoning</think><answer>answer</answer> (one of each tag,"
            f" both non-empty, nothing outside): {short(trace)}"
        )
        return out
    match = _THINK_ANSWER.fullmatch(trace)
    think = match["think"].strip() if match else ""
    out["trace_words"] = word_count(think)
    predicted = extract_answer(trace)
    gold = payload.get("answer")
    choices = payload.get("choices") if isinstance(payload.get("choices"), list) else None
    answer_type = payload.get("answer_type") if isinstance(payload.get("answer_type"), str) else None
    precision = payload.get("precision") if isinstance(payload.get("precision"), int) else None
    if isinstance(gold, str) and not grade(
        predicted, gold, choices, answer_type=answer_type, precision=precision
    ):
        out[R_TRACE_ANSWER] = (
            f"trace answer {short(predicted)} does not grade equal to the ground truth {short(gold)}"
        )
    reasoning = payload.get("reasoning")
    if isinstance(reasoning, str) and reasoning.strip() != think:
        out[R_REASONING] = "field 'reasoning' differs from the <think> text of the completion"
    return out


def _image_columns(facts: images.ImageFacts, declared: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict(facts.errors)
    if facts.file_sha256 is not None and isinstance(declared, str) and declared != facts.file_sha256:
        out[R_SHA] = (
            f"image_sha256 {declared[:16]}… does not match the file bytes ({facts.file_sha256[:16]}…)"
        )
    if facts.width is not None and facts.height is not None:
        low, high = min(facts.width, facts.height), max(facts.width, facts.height)
        out["image_width"], out["image_height"] = facts.width, facts.height
        out["image_min_side"], out["image_max_side"] = low, high
        out["image_aspect_ratio"] = round(high / max(low, 1), 3)
    return out


def inspect_record(
    lineno: int,
    raw: bytes,
    guard: images.PathGuard,
    kind: str,
    config: ValidationConfig,
    fingerprint: bool = False,
) -> Row:
    """All row-level checks of one line of records.jsonl."""
    values: dict[str, Any] = {"line": lineno, "ref": f"line {lineno}"}
    payload, reason = parse_line(raw)
    if payload is None:
        values[R_PARSE] = reason
        return Row(values)
    rid = payload.get("id")
    if isinstance(rid, str) and rid:
        values["id"] = rid
        values["ref"] = f"{rid} (line {lineno})"
    problems = field_errors(payload, kind)
    if problems:
        values[R_FIELDS] = clip("; ".join(problems))
    for name in ("task", "source", "split", "question", "answer", "image_sha256", "caption"):
        values[name] = _text(payload, name)
    row = Row(values)
    if values["question"] is not None:
        row.question_key = normalize_question(values["question"])
        values["question_key"] = row.question_key
    if isinstance(payload.get("caption"), str):
        values["caption_words"] = word_count(payload["caption"])
    pass_rate = payload.get("pass_rate")
    if isinstance(pass_rate, int | float) and not isinstance(pass_rate, bool) and math.isfinite(pass_rate):
        values["pass_rate"] = float(pass_rate)
    image = payload.get("image")
    if isinstance(image, str) and image:
        row.facts = images.inspect_image(
            guard, image, config.max_image_bytes, config.max_image_pixels, fingerprint
        )
        values.update(_image_columns(row.facts, payload.get("image_sha256")))
    if kind in ("sft", "rl") and isinstance(payload.get("prompt"), list):
        values[R_PROMPT] = prompt_problem(payload["prompt"])
    if kind == "sft" and isinstance(payload.get("completion"), list):
        trace, problem = completion_text(payload["completion"])
        values[R_COMPLETION] = problem
        if trace is not None:
            values.update(trace_checks(trace, payload, config))
    return row


def inspect_dataset(
    dataset_dir: Path, kind: str, config: ValidationConfig, fingerprint: bool = False
) -> list[Row]:
    """Row checks of every line of `dataset_dir`/records.jsonl, in file order."""
    guard = images.PathGuard(dataset_dir)
    try:
        return [
            inspect_record(lineno, raw, guard, kind, config, fingerprint)
            for lineno, raw in iter_lines(dataset_dir / RECORDS_FILE)
        ]
    except OSError as exc:
        raise DatasetError(f"{dataset_dir / RECORDS_FILE}: cannot be read ({exc.strerror or exc})") from None


def balance(rows: list[Row], column: str) -> dict[str, int]:
    """Records per value of `column` (rows without a value are left out)."""
    counts = Counter(row.values.get(column) for row in rows)
    counts.pop(None, None)
    return dict(sorted(counts.items()))


def mark_task_balance(rows: list[Row], config: ValidationConfig) -> None:
    """Warn on every record of a task that holds less than `min_task_share` of a uniform share."""
    counts = balance(rows, "task")
    total = sum(counts.values())
    if len(counts) < 2 or config.min_task_share <= 0:
        return
    floor = config.min_task_share / len(counts)
    thin = {task: n for task, n in counts.items() if n / total < floor}
    for row in rows:
        task = row.values.get("task")
        if task in thin:
            row.values[R_TASK_BALANCE] = (
                f"task {task!r} holds {thin[task]} of {total} records ({thin[task] / total:.1%}), under"
                f" {config.min_task_share:.0%} of a uniform share over {len(counts)} tasks ({floor:.1%})"
            )
