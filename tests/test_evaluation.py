"""Evaluation: pure scoring of per-item rows, the files an evaluation writes, and a smoke run on the tiny VLM."""

from __future__ import annotations

import json

import pytest

from vlthinker.evaluation import (
    EvaluationError,
    build_prompt,
    compute_metrics,
    correctness,
    evaluate_model,
    flat_metrics,
    format_followed,
    headline_metrics,
    read_metrics,
    read_predictions,
    score_response,
    write_results,
)
from vlthinker.records import Record

SHA = "0" * 64


def record(rid: str, answer: str, task: str = "count", difficulty: int | None = 1, **extra) -> Record:
    return Record(
        id=rid,
        source="synthetic",
        task=task,
        image=f"images/{rid}.png",
        image_sha256=SHA,
        question="How many circles?",
        answer=answer,
        split="heldout",
        difficulty=difficulty,
        **extra,
    )


def row(
    key: str,
    correct: bool,
    task: str = "count",
    difficulty: int = 1,
    fmt: bool = True,
    bench: str = "heldout",
):
    return {
        "key": f"{bench}/{key}",
        "benchmark": bench,
        "id": key,
        "task": task,
        "difficulty": difficulty,
        "correct": correct,
        "format_ok": fmt,
    }


@pytest.mark.parametrize(
    ("style", "response", "correct", "fmt"),
    [
        ("reasoning", "<think>I count five.</think><answer>5</answer>", True, True),
        ("reasoning", "<think>I count.</think><answer>4</answer>", False, True),
        ("reasoning", "the answer is \\boxed{5}", True, False),
        ("reasoning", "<think>a</think><answer>5</answer><answer>5</answer>", True, False),
        ("direct", "\\boxed{5}", True, True),
        ("direct", "\\boxed{five}", True, True),
        ("direct", "5", False, False),
        ("direct", "", False, False),
    ],
)
def test_score_response_grades_leniently_and_reports_format(style, response, correct, fmt):
    result = score_response(record("a", "5"), response, style, "heldout")
    assert result["correct"] is correct
    assert result["format_ok"] is fmt
    assert result["key"] == "heldout/a" and result["response"] == response


def test_multiple_choice_letter_and_mathvista_precision():
    mc = record("m", "B", choices=["3", "5", "7"])
    assert score_response(mc, "<think>x</think><answer>B</answer>", "reasoning", "mathvista")["correct"]
    assert score_response(mc, "<think>x</think><answer>5</answer>", "reasoning", "mathvista")["correct"]
    assert not score_response(mc, "<think>x</think><answer>C</answer>", "reasoning", "mathvista")["correct"]
    fl = record("f", "1.25", answer_type="float", precision=1)
    assert score_response(fl, "\\boxed{1.3}", "direct", "mathvista")["correct"]  # both round half-up to 1.3
    assert not score_response(fl, "\\boxed{1.2}", "direct", "mathvista")["correct"]


def test_format_followed_and_prompt_styles():
    assert format_followed("<think>r</think><answer>a</answer>", "reasoning")
    assert not format_followed("\\boxed{}", "direct")
    assert "<think>" in build_prompt("Q?", "reasoning")[0]["content"][1]["text"]
    assert "\\boxed{}" in build_prompt("Q?", "direct")[0]["content"][1]["text"]
    with pytest.raises(EvaluationError, match="prompt style"):
        build_prompt("Q?", "chatty")


def test_metrics_overall_per_task_per_difficulty_and_flat_names():
    rows = [
        row("1", True, "count", 1),
        row("2", False, "count", 2, fmt=False),
        row("3", True, "clock", 1),
        row("4", True, "clock", 2),
        row("x", False, "math", 3, bench="mathvista"),
    ]
    metrics = compute_metrics(rows, {"heldout": "a" * 32 + ".dir"})
    assert metrics["n"] == 5 and metrics["accuracy"] == pytest.approx(0.6)
    held = metrics["benchmarks"]["heldout"]
    assert held["accuracy"] == 0.75 and held["format_rate"] == 0.75 and held["dataset_md5"].endswith(".dir")
    assert held["per_task"]["count"] == {"n": 2, "correct": 1, "accuracy": 0.5, "format_rate": 0.5}
    assert held["per_difficulty"]["2"]["accuracy"] == 0.5
    flat = flat_metrics(metrics)
    assert flat["heldout_accuracy"] == 0.75
    assert flat["mathvista_accuracy"] == 0.0
    assert flat["heldout_task_clock_accuracy"] == 1.0
    assert flat["heldout_difficulty_1_accuracy"] == 1.0
    assert flat["format_rate"] == pytest.approx(0.8)
    assert "heldout_task_clock_accuracy" not in headline_metrics(metrics)
    assert correctness(rows)["heldout/2"] is False


def test_empty_rows_have_zero_metrics():
    metrics = compute_metrics([])
    assert metrics["n"] == 0 and metrics["accuracy"] == 0.0 and metrics["benchmarks"] == {}


def test_write_results_writes_every_file_atomically(tmp_path):
    out = tmp_path / "eval"
    rows = [row("1", True), row("2", False)]
    payload = write_results(out, rows, {"prompt_style": "reasoning"}, {"heldout": "b" * 32 + ".dir"})
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy.png",
        "metrics.json",
        "predictions.jsonl",
        "summary.html",
        "summary.md",
    ]
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_metrics(out) == payload and payload["info"]["prompt_style"] == "reasoning"
    assert read_predictions(out) == rows
    assert "50.0%" in (out / "summary.md").read_text()
    assert "<table>" in (out / "summary.html").read_text()
    write_results(out, rows[:1])  # replacing an existing output leaves no temp dirs behind
    assert read_metrics(out)["n"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_evaluate_model_smoke_on_the_tiny_vlm(tiny_model_dir, tmp_path):
    from vlthinker.backends.base import SamplingParams
    from vlthinker.datasets_dvc import dir_md5
    from vlthinker.sources.generate import generate_dataset

    data = generate_dataset(tmp_path / "heldout", n=6, seed=3, split="heldout")
    out = tmp_path / "eval"
    payload = evaluate_model(
        tiny_model_dir,
        {"heldout": data},
        out,
        prompt_style="reasoning",
        sampling=SamplingParams(max_new_tokens=6, temperature=0.0),
        batch_size=6,
    )
    rows = read_predictions(out)
    assert len(rows) == 6 and payload["n"] == 6
    assert {r["benchmark"] for r in rows} == {"heldout"}
    assert all(isinstance(r["response"], str) and isinstance(r["correct"], bool) for r in rows)
    assert payload["benchmarks"]["heldout"]["dataset_md5"] == dir_md5(data)
    assert payload["info"]["prompt_style"] == "reasoning" and payload["info"]["temperature"] == 0.0
    assert json.loads((out / "metrics.json").read_text())["benchmarks"]["heldout"]["n"] == 6


class CannedBackend:
    """A backend that answers from a table keyed by a question fragment (no model needed)."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.seen: list[str] = []

    def generate(self, prompts, images=None, params=None, progress=None):
        out = []
        for prompt in prompts:
            text = prompt[0]["content"][1]["text"]
            self.seen.append(text)
            out.append([next(a for q, a in self.answers.items() if q in text)])
        return out

    def close(self):
        pass


def test_mathvista_adapter_records_are_graded_with_their_options_and_precision(tmp_path):
    from PIL import Image

    from vlthinker.records import write_dataset
    from vlthinker.sources.adapters import get_adapter

    adapter = get_adapter("mathvista")
    rows = [
        {"pid": "1", "question": "Which is larger?", "choices": ["f(2)", "f(5)"], "answer": "f(5)",
         "question_type": "multi_choice", "answer_type": "text", "decoded_image": Image.new("RGB", (8, 8)),
         "metadata": {"task": "figure question answering"}},
        {"pid": "2", "question": "Length of the segment?", "answer": "4.5", "precision": 1.0,
         "question_type": "free_form", "answer_type": "float", "decoded_image": Image.new("RGB", (8, 8), "red"),
         "metadata": {"task": "geometry problem solving"}},
    ]  # fmt: skip
    data = write_dataset(tmp_path / "mathvista", [adapter.map_row(row, i) for i, row in enumerate(rows)])
    backend = CannedBackend(
        {
            "Which is larger?": "<think>f rises</think><answer>(B) f(5)</answer>",
            "Length of the segment?": "<think>measure</think><answer>4.46</answer>",
        }
    )
    payload = evaluate_model("unused", {"mathvista": data}, tmp_path / "eval", backend=backend)
    assert payload["benchmarks"]["mathvista"]["accuracy"] == 1.0
    assert set(payload["benchmarks"]["mathvista"]["per_task"]) == {
        "figure_question_answering", "geometry_problem_solving",
    }  # fmt: skip
    assert all("<think>" in text for text in backend.seen)  # reasoning prompt style by default
