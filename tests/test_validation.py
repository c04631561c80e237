"""Validation suites: clean datasets pass, each kind of broken dataset fails with its named rule.

One small clean synthetic dataset is generated per module and copied into `tmp_path` for each case;
a case breaks one thing and checks that exactly the expected rule(s) fail, that the failing record
is named in the examples, and that nothing raised. Warnings are checked to never fail a dataset.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from vlthinker.errors import VLThinkerError
from vlthinker.prompts import assistant_message, reasoning_question, user_message
from vlthinker.records import RECORDS_FILE, sha256_bytes
from vlthinker.sources.generate import generate_dataset
from vlthinker.validation import ValidationConfig, validate_dataset
from vlthinker.validation.rules import rules_for

N_CLEAN = 18


# --------------------------------------------------------------------------------------------------
# Building datasets


@pytest.fixture(scope="module")
def clean_source(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("clean") / "train", n=N_CLEAN, seed=0, split="train")


@pytest.fixture(scope="module")
def clean_eval(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("clean") / "heldout", n=12, seed=0, split="heldout")


def read_lines(dataset: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (dataset / RECORDS_FILE).read_text().splitlines() if line.strip()]


def write_lines(dataset: Path, lines: list[dict[str, Any] | bytes]) -> None:
    data = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )
    (dataset / RECORDS_FILE).write_bytes(data)


def png(width: int = 32, height: int = 32, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def put_image(dataset: Path, record: dict[str, Any], data: bytes, name: str = "replaced.png") -> None:
    """Point `record` at a new image file holding `data` (its sha256 kept consistent)."""
    (dataset / "images" / name).write_bytes(data)
    record["image"] = f"images/{name}"
    record["image_sha256"] = sha256_bytes(data)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (a decompression bomb's signature)."""
    data = bytearray(png(16, 16))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def trace_of(record: dict[str, Any], answer: str | None = None, reasoning: str | None = None) -> str:
    reasoning = reasoning if reasoning is not None else reasoning_text(record)
    return f"<think>{reasoning}</think><answer>{answer if answer is not None else record['answer']}</answer>"


def reasoning_text(record: dict[str, Any]) -> str:
    return f"The picture shows: {record['caption']} So the answer is {record['answer']}."


def to_sft(record: dict[str, Any]) -> dict[str, Any]:
    return record | {
        "prompt": user_message(reasoning_question(record["question"])),
        "completion": assistant_message(trace_of(record)),
        "reasoning": reasoning_text(record),
    }


def to_rl(record: dict[str, Any]) -> dict[str, Any]:
    return record | {"prompt": user_message(reasoning_question(record["question"])), "pass_rate": 0.5}


CONVERT: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "source": lambda r: r,
    "captioned": lambda r: r,
    "eval": lambda r: r | {"split": "heldout"},
    "sft": to_sft,
    "rl": to_rl,
}


def make_dataset(clean: Path, target: Path, kind: str) -> tuple[Path, list[dict[str, Any]]]:
    shutil.copytree(clean, target)
    records = [CONVERT[kind](r) for r in read_lines(clean)]
    write_lines(target, records)
    return target, records


def failed(result) -> set[str]:
    return result.failed_rules()


# --------------------------------------------------------------------------------------------------
# Clean datasets pass


@pytest.mark.parametrize("kind", ["source", "captioned", "sft", "rl", "eval"])
def test_clean_dataset_passes(clean_source, tmp_path, kind):
    dataset, _ = make_dataset(clean_source, tmp_path / "data", kind)
    result = validate_dataset(dataset, kind)
    assert result.success, result.summary()
    assert not result.warnings, result.summary()
    names = {o.rule for o in result.outcomes}
    assert names == {r.name for r in rules_for(kind, ValidationConfig())}
    assert result.counts["task"] and sum(result.counts["task"].values()) == N_CLEAN


def test_clean_train_against_disjoint_heldout_passes(clean_source, clean_eval):
    result = validate_dataset(clean_source, "source", against=[clean_eval])
    assert result.success, result.summary()
    assert result.overlaps == []
    assert {"contamination_sha256", "contamination_phash", "contamination_question_image"} <= {
        o.rule for o in result.outcomes
    }


# --------------------------------------------------------------------------------------------------
# Broken datasets: each case breaks the record at index 2 (or the file) and names the rules that fail.

Mutator = Callable[[Path, list[dict[str, Any]]], list[dict[str, Any] | bytes]]


def _set(field: str, value: Any) -> Mutator:
    def mutate(dataset, records):
        records[2][field] = value
        return records

    return mutate


def _drop(field: str) -> Mutator:
    def mutate(dataset, records):
        del records[2][field]
        return records

    return mutate


def _image(data: Callable[[Path], bytes]) -> Mutator:
    def mutate(dataset, records):
        put_image(dataset, records[2], data(dataset))
        return records

    return mutate


def _replace_line(raw: bytes) -> Mutator:
    def mutate(dataset, records):
        return [*records[:2], raw, *records[3:]]

    return mutate


def _truncated(dataset: Path) -> bytes:
    data = (dataset / "images" / sorted(os.listdir(dataset / "images"))[0]).read_bytes()
    return data[: len(data) // 2]


def _corrupt(dataset: Path) -> bytes:
    data = bytearray((dataset / "images" / sorted(os.listdir(dataset / "images"))[0]).read_bytes())
    for i in range(60, len(data) - 20):
        data[i] ^= 0x5A
    return bytes(data)


def _missing_image(dataset, records):
    (dataset / records[2]["image"]).unlink()
    return records


def _directory_image(dataset, records):
    (dataset / "images" / "folder.png").mkdir()
    records[2]["image"] = "images/folder.png"
    return records


def _fifo_image(dataset, records):
    os.mkfifo(dataset / "images" / "pipe.png")
    records[2]["image"] = "images/pipe.png"
    return records


def _symlink_out(dataset, records):
    outside = dataset.parent / "outside.png"
    outside.write_bytes(png())
    (dataset / "images" / "link.png").symlink_to(outside)
    records[2]["image"] = "images/link.png"
    records[2]["image_sha256"] = sha256_bytes(outside.read_bytes())
    return records


def _dotdot(dataset, records):
    outside = dataset.parent / "escaped.png"
    outside.write_bytes(png())
    records[2]["image"] = "../escaped.png"
    records[2]["image_sha256"] = sha256_bytes(outside.read_bytes())
    return records


def _absolute(dataset, records):
    records[2]["image"] = str((dataset / records[2]["image"]).resolve())
    return records


def _duplicate_id(dataset, records):
    records[2]["id"] = records[1]["id"]
    return records


def _duplicate_item(dataset, records):
    return [*records, records[2] | {"id": "copy-of-2"}]


def _empty(dataset, records):
    return []


def _uneven_tasks(dataset, records):
    rare = [r for r in records if r["task"] == "clock"][:1]
    return [r for r in records if r["task"] != "clock"] + rare


# case id -> (kind, mutator, rules that must fail, config overrides)
BROKEN: dict[str, tuple[str, Mutator, set[str], dict[str, Any]]] = {
    "bad_json_line": ("source", _replace_line(b'{"id": "x", "question": '), {"records_parse"}, {}),
    "non_utf8_bytes": ("source", _replace_line(b'{"id": "caf\xe9"}'), {"records_parse"}, {}),
    "json_not_object": ("source", _replace_line(b'["a", "list"]'), {"records_parse"}, {}),
    "wrong_type": ("source", _set("difficulty", "hard"), {"record_fields"}, {}),
    "question_not_string": ("source", _set("question", 42), {"record_fields"}, {}),
    "missing_field": ("source", _drop("answer"), {"record_fields"}, {}),
    "blank_question": ("source", _set("question", "   "), {"question_nonempty"}, {}),
    "blank_answer": ("source", _set("answer", " \t"), {"answer_nonempty"}, {}),
    "duplicate_id": ("source", _duplicate_id, {"id_unique"}, {}),
    "duplicate_image_question": ("source", _duplicate_item, {"image_question_unique"}, {}),
    "empty_dataset": ("source", _empty, {"row_count"}, {}),
    "missing_image": ("source", _missing_image, {"image_exists"}, {}),
    "image_is_directory": ("source", _directory_image, {"image_exists"}, {}),
    "image_is_fifo": ("source", _fifo_image, {"image_exists"}, {}),
    "truncated_image": ("source", _image(_truncated), {"image_decodes"}, {}),
    "corrupt_image": ("source", _image(_corrupt), {"image_decodes"}, {}),
    "not_an_image": ("source", _image(lambda d: b"this is a text file, not a PNG\n"), {"image_decodes"}, {}),
    "decompression_bomb": ("source", _image(lambda d: bomb_png(60000, 60000)), {"image_pixels"}, {}),
    "bomb_under_pillow_limit": ("source", _image(lambda d: bomb_png(7000, 7000)), {"image_pixels"}, {}),
    "tiny_image": ("source", _image(lambda d: png(4, 4)), {"image_min_side"}, {}),
    "huge_side": ("source", _image(lambda d: png(9000, 48)), {"image_max_side"}, {}),
    "absurd_aspect": ("source", _image(lambda d: png(2000, 8)), {"image_aspect_ratio"}, {}),
    "file_too_big": ("source", _image(lambda d: png(64, 64)), {"image_file_size"}, {"max_image_bytes": 100}),
    "path_dotdot": ("source", _dotdot, {"image_path_inside"}, {}),
    "path_absolute": ("source", _absolute, {"image_path_inside"}, {}),
    "path_symlink_out": ("source", _symlink_out, {"image_path_inside"}, {}),
    "path_nul_byte": ("source", _set("image", "images/a\x00b.png"), {"image_path_inside"}, {}),
    "sha_mismatch": ("source", _set("image_sha256", "0" * 64), {"image_sha256_matches"}, {}),
    "captioned_missing_caption": ("captioned", _drop("caption"), {"record_fields"}, {}),
    "captioned_blank_caption": (
        "captioned",
        _set("caption", "  "),
        {"caption_nonempty", "caption_words"},
        {},
    ),
    "captioned_short_caption": ("captioned", _set("caption", "A clock."), {"caption_words"}, {}),
    "sft_missing_completion": ("sft", _drop("completion"), {"record_fields"}, {}),
    "sft_prompt_without_image": (
        "sft",
        _set("prompt", [{"role": "user", "content": [{"type": "text", "text": "Q?"}]}]),
        {"prompt_format"},
        {},
    ),
    "sft_two_completion_messages": (
        "sft",
        _set("completion", assistant_message("<think>a</think><answer>b</answer>") * 2),
        {"completion_format"},
        {},
    ),
    "sft_bad_trace_format": (
        "sft",
        _set("completion", assistant_message("The answer is 3.")),
        {"trace_format"},
        {},
    ),
    "sft_two_answer_tags": (
        "sft",
        _set("completion", assistant_message("<think>x</think><answer>1</answer><answer>2</answer>")),
        {"trace_format"},
        {},
    ),
    "rl_pass_rate_out_of_range": ("rl", _set("pass_rate", 1.5), {"pass_rate_range"}, {}),
    "rl_pass_rate_wrong_type": ("rl", _set("pass_rate", "high"), {"record_fields"}, {}),
}


def _sft_trace(transform: Callable[[dict[str, Any]], dict[str, Any]]) -> Mutator:
    def mutate(dataset, records):
        records[2] = records[2] | transform(records[2])
        return records

    return mutate


BROKEN |= {
    "sft_wrong_answer": (
        "sft",
        _sft_trace(lambda r: {"completion": assistant_message(trace_of(r, answer="definitely wrong"))}),
        {"trace_answer_correct"},
        {},
    ),
    "sft_too_long": (
        "sft",
        _sft_trace(
            lambda r: {
                "completion": assistant_message(trace_of(r, reasoning="step " * 30)),
                "reasoning": "step " * 30,
            }
        ),
        {"trace_words"},
        {"trace_max_words": 20},
    ),
    "sft_reflection_left": (
        "sft",
        _sft_trace(
            lambda r: {
                "completion": assistant_message(trace_of(r, reasoning="It is 3. Wait, let me check again.")),
                "reasoning": "It is 3. Wait, let me check again.",
            }
        ),
        {"reflection_markers"},
        {},
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_dataset_fails_with_named_rule(clean_source, tmp_path, case):
    kind, mutate, expected, overrides = BROKEN[case]
    dataset, records = make_dataset(clean_source, tmp_path / "data", kind)
    write_lines(dataset, mutate(dataset, records))
    result = validate_dataset(dataset, kind, config=ValidationConfig(**overrides))
    assert not result.success
    assert failed(result) == expected, result.summary()
    if case != "empty_dataset":
        for rule in expected:  # the failing record is named: its id, or its line when unparsable
            shown = " ".join(str(e["record"]) for e in result.outcome(rule).examples)
            assert "line 3" in shown, (rule, shown)
    json.dumps(result.to_dict(), default=str)


def test_at_least_twenty_kinds_of_broken_dataset():
    assert len(BROKEN) >= 20
    covered = set().union(*(rules for _, _, rules, _ in BROKEN.values()))
    assert len(covered) >= 20


def test_messages_name_the_problem(clean_source, tmp_path):
    dataset, records = make_dataset(clean_source, tmp_path / "data", "source")
    put_image(dataset, records[2], bomb_png(60000, 60000))
    records[3]["image"] = "../../etc/passwd"
    write_lines(dataset, [*records, b"\xff\xfe not utf-8"])
    result = validate_dataset(dataset, "source")
    assert "decompression" in result.outcome("image_pixels").examples[0]["value"]
    assert "'..'" in result.outcome("image_path_inside").examples[0]["value"]
    parse = result.outcome("records_parse").examples[0]
    assert parse["record"] == f"line {len(records) + 1}" and "UTF-8" in parse["value"]
    summary = result.summary()
    assert "FAIL image_pixels" in summary and "FAIL records_parse" in summary


# --------------------------------------------------------------------------------------------------
# Warnings never fail


WARNINGS: dict[str, tuple[str, Mutator, str, dict[str, Any]]] = {
    "reasoning_differs": ("sft", _set("reasoning", "something else entirely"), "reasoning_matches_trace", {}),
    "training_row_from_heldout": ("sft", _set("split", "heldout"), "split_expected", {}),
    "task_imbalance": ("source", _uneven_tasks, "task_balance", {"min_task_share": 0.5}),
}


@pytest.mark.parametrize("case", sorted(WARNINGS))
def test_warning_reports_without_failing(clean_source, tmp_path, case):
    kind, mutate, rule, overrides = WARNINGS[case]
    dataset, records = make_dataset(clean_source, tmp_path / "data", kind)
    write_lines(dataset, mutate(dataset, records))
    result = validate_dataset(dataset, kind, config=ValidationConfig(**overrides))
    assert result.success, result.summary()
    assert {o.rule for o in result.warnings} == {rule}
    assert f"WARN {rule}" in result.summary()


# --------------------------------------------------------------------------------------------------
# Contamination


def test_planted_eval_item_found_by_both_hashes(clean_source, clean_eval, tmp_path):
    dataset, records = make_dataset(clean_source, tmp_path / "data", "captioned")
    leaked = read_lines(clean_eval)[4]
    original = (clean_eval / leaked["image"]).read_bytes()
    # 1) the eval item itself, image bytes copied as they are
    planted = leaked | {"id": "planted-exact", "split": "train"}
    put_image(dataset, planted, original, "planted.png")
    # 2) another eval image, re-encoded as JPEG and resized: only the perceptual hash can see it
    other = read_lines(clean_eval)[7]
    buffer = io.BytesIO()
    with Image.open(clean_eval / other["image"]) as image:
        image.convert("RGB").resize((150, 150)).save(buffer, "JPEG", quality=70)
    reencoded = records[0] | {"id": "planted-jpeg", "question": other["question"]}
    put_image(dataset, reencoded, buffer.getvalue(), "planted.jpg")
    write_lines(dataset, [*records, planted, reencoded])

    result = validate_dataset(dataset, "captioned", against=[clean_eval])
    assert not result.success
    assert failed(result) == {"contamination_sha256", "contamination_phash", "contamination_question_image"}
    by_rule: dict[str, set[tuple[str, str]]] = {}
    for overlap in result.overlaps:
        by_rule.setdefault(overlap["rule"], set()).add((overlap["record"].split()[0], overlap["eval_id"]))
    assert by_rule["contamination_sha256"] == {("planted-exact", leaked["id"])}
    assert by_rule["contamination_phash"] == {("planted-exact", leaked["id"]), ("planted-jpeg", other["id"])}
    assert by_rule["contamination_question_image"] == {
        ("planted-exact", leaked["id"]),
        ("planted-jpeg", other["id"]),
    }
    assert all(o["eval_dataset"] == str(clean_eval) for o in result.overlaps)


def test_perceptual_search_is_exact():
    import numpy as np

    from vlthinker.validation.contamination import perceptual_pairs

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(300, 16, 16, 3), dtype=np.uint8)
    evals = rng.integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8)
    noise = rng.integers(-30, 31, size=(10, 16, 16, 3))
    train[:10] = np.clip(evals[:10].astype(int) + noise, 0, 255).astype(np.uint8)
    got = {(t, e) for t, e, _ in perceptual_pairs(train, evals, 30)}
    brute = np.abs(train.reshape(300, 1, -1).astype(int) - evals.reshape(1, 40, -1)).max(axis=2) <= 30
    assert got == set(zip(*np.nonzero(brute), strict=True))
    assert {(i, i) for i in range(10)} <= got


# --------------------------------------------------------------------------------------------------
# Reports, CLI, imports


def test_reports_written_beside_dataset(clean_source, tmp_path):
    dataset, records = make_dataset(clean_source, tmp_path / "data", "source")
    records[2]["answer"] = " "
    write_lines(dataset, records)
    result = validate_dataset(dataset, "source")
    json_path, html_path = result.write()
    assert json_path == tmp_path / "data.validation.json" and html_path.parent == tmp_path
    report = json.loads(json_path.read_text())
    assert report["success"] is False and report["failed_critical"] == ["answer_nonempty"]
    assert report["great_expectations"]["results"]
    page = html_path.read_text()
    assert "answer_nonempty" in page and "FAILED" in page and "<script" not in page
    assert not (dataset / "validation.json").exists()  # the dataset itself (its DVC hash) is untouched


def test_cli_validate_exit_codes(clean_source, clean_eval, tmp_path):
    from vlthinker.cli import app

    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "validate",
            str(clean_source),
            "--kind",
            "source",
            "--against",
            str(clean_eval),
            "--report-dir",
            str(tmp_path / "ok"),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "PASSED" in ok.output and (tmp_path / "ok" / "validation.json").is_file()

    dataset, records = make_dataset(clean_source, tmp_path / "data", "source")
    put_image(dataset, records[2], b"GIF89a but not really")
    write_lines(dataset, records)
    bad = runner.invoke(app, ["validate", str(dataset), "--kind", "source"])
    assert bad.exit_code == 1
    assert "FAIL image_decodes" in bad.output and records[2]["id"] in bad.output

    missing = runner.invoke(app, ["validate", str(tmp_path / "nope"), "--kind", "source"])
    assert isinstance(missing.exception, VLThinkerError)


def test_cli_broken_dataset_never_tracebacks(clean_source, tmp_path):
    dataset, records = make_dataset(clean_source, tmp_path / "data", "sft")
    put_image(dataset, records[1], bomb_png(60000, 60000))
    records[3]["image"] = "/etc/passwd"
    write_lines(dataset, [*records[:5], b"\x80\x81garbage", b"[1, 2]"])
    proc = subprocess.run(
        [sys.executable, "-m", "vlthinker.cli", "validate", str(dataset), "--kind", "sft"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for rule in ("image_pixels", "image_path_inside", "records_parse"):
        assert f"FAIL {rule}" in proc.stdout


def test_importing_validation_does_not_import_great_expectations():
    code = "import sys, vlthinker.validation; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_arguments_are_user_errors(clean_source, tmp_path):
    with pytest.raises(VLThinkerError, match="unknown dataset kind"):
        validate_dataset(clean_source, "nonsense")
    with pytest.raises(VLThinkerError, match="not a directory"):
        validate_dataset(tmp_path / "missing", "source")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VLThinkerError, match=r"records\.jsonl"):
        validate_dataset(clean_source, "source", against=[tmp_path / "empty"])


def test_config_rejects_inverted_bounds():
    with pytest.raises(ValueError, match="caption_min_words"):
        ValidationConfig(caption_min_words=50, caption_max_words=10)


def test_great_expectations_bookkeeping_stays_out_of_the_step_output():
    """kfp.local logs at INFO: GE's import-time chatter (~240 lines a step) must not reach it."""
    code = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "import pandas as pd\n"
        "from vlthinker.validation.rules import CRITICAL, Rule\n"
        "from vlthinker.validation.suites import run_suite\n"
        "rule = Rule('has-id', CRITICAL, 'an id column', 'ExpectColumnToExist', {'column': 'id'})\n"
        "result = run_suite(pd.DataFrame({'ref': ['a (line 1)'], 'id': ['a']}), [rule], 'probe')\n"
        "assert result['success'], result\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "great_expectations" not in result.stderr, result.stderr[:2000]
