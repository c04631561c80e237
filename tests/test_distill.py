"""Distillation on the synthetic sources with the offline teacher: filters, stats, resume."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vlthinker.answers import extract_answer, format_ok, grade
from vlthinker.cli import app
from vlthinker.config import Config, TraceFilterConfig, load_config
from vlthinker.records import read_records
from vlthinker.sources.generate import generate_dataset
from vlthinker.steps import traces
from vlthinker.steps.distill import distill, teacher_source
from vlthinker.steps.journal import journal_path
from vlthinker.steps.sft_data import make_sft_dataset


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("distill") / "source", n=120, seed=3, split="train")


def test_offline_distillation_writes_verified_sft_data(source_dir, tmp_path):
    stats = distill(Config(), source_dir, tmp_path / "sft", log=lambda _: None)
    records = read_records(tmp_path / "sft")
    assert len(records) == stats["items"]["kept"] > 0
    for record in records:
        completion = record.completion[0]["content"][0]["text"]
        assert format_ok(completion)
        assert grade(extract_answer(completion), record.answer, record.choices)
        assert record.prompt[0]["content"][0] == {"type": "image"}
        assert "<think>" in record.prompt[0]["content"][1]["text"]
        assert record.trace_words <= 500
        assert not any(marker in record.reasoning for marker in ("Wait,", "But wait,", "But the question"))
        assert (tmp_path / "sft" / record.image).is_file()
    on_disk = json.loads((tmp_path / "sft" / "stats.json").read_text())
    assert on_disk == stats
    assert stats["chain_source"] == "offline-scripted-teacher"
    assert set(stats["pass_at_k"]["by_task"]) == {
        "count",
        "bar_chart",
        "grid_geometry",
        "table",
        "spatial",
        "clock",
    }
    assert set(stats["pass_at_k"]["by_source"]) == {"synthetic"}


def test_each_filter_does_work(source_dir, tmp_path):
    """Dropped counts show every filter working on the offline teacher's chains."""
    config = load_config(None, {"distill.filters.max_words": 120, "distill.k": 4})
    stats = distill(config, source_dir, tmp_path / "sft", log=lambda _: None)
    dropped = stats["chains"]["dropped"]
    assert dropped["wrong_answer"] > 0
    assert dropped["too_long"] > 0
    assert dropped["truncation_lost_answer"] > 0
    assert stats["chains"]["kept_traces_truncated_at_reflection"] > 0
    assert stats["chains"]["total"] == 4 * stats["items"]["total"]
    # the shortest verified chain is kept
    shorter = distill(
        load_config(None, {"distill.filters.keep": "first"}), source_dir, tmp_path / "first", log=print
    )
    assert shorter["items"]["kept"] >= stats["items"]["kept"]
    words = {r.id: r.trace_words for r in read_records(tmp_path / "first")}
    for record in read_records(tmp_path / "sft"):
        if record.id in words:
            assert record.trace_words <= max(words[record.id], 120)


def test_no_correct_chain_drops_the_item(source_dir, tmp_path):
    config = load_config(None, {"distill.offline.error_prob": 1.0, "distill.k": 2})
    stats = distill(config, source_dir, tmp_path / "sft", log=lambda _: None)
    assert stats["items"]["kept"] == 0
    assert stats["items"]["dropped"]["no_correct_chain"] == stats["items"]["total"]
    assert read_records(tmp_path / "sft") == []


class _FlakySource:
    """Wraps a chain source; fails after ``fail_after`` batches (an interrupted run)."""

    def __init__(self, inner, fail_after=None):
        self.inner, self.fail_after, self.calls, self.sampled = inner, fail_after, 0, 0
        self.name = inner.name

    def describe(self):
        return self.inner.describe()

    def sample(self, records, dataset_dir, k):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("killed")
        self.calls += 1
        self.sampled += len(records)
        return self.inner.sample(records, dataset_dir, k)


def test_interrupted_distillation_resumes_without_resampling(source_dir, tmp_path):
    config = Config()
    output = tmp_path / "sft"
    flaky = _FlakySource(teacher_source(config), fail_after=2)
    with pytest.raises(RuntimeError):
        make_sft_dataset(source_dir, output, flaky, 4, config.distill.filters, batch_size=25, log=print)
    assert not output.exists(), "no partial dataset under the final name"
    assert journal_path(output, "chains").is_file()
    resumed = _FlakySource(teacher_source(config))
    stats = make_sft_dataset(source_dir, output, resumed, 4, config.distill.filters, batch_size=25, log=print)
    assert resumed.sampled == 120 - 50
    assert not journal_path(output, "chains").exists()
    reference = distill(config, source_dir, tmp_path / "reference", log=lambda _: None)
    assert stats == reference
    assert (output / "records.jsonl").read_bytes() == (tmp_path / "reference" / "records.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("chain", "reason"),
    [
        ("no tags at all, \\boxed{3}", traces.DROP_NO_THINK),
        ("<think>a <think>b</think><answer>7</answer>", traces.DROP_MALFORMED),
        ("<think>a</think><answer>7</answer><answer>7</answer>", traces.DROP_MALFORMED),
        ("<think>I think so</think> so it is something", traces.DROP_NO_ANSWER),
        ("<think>3 and 4 make 7</think> \\boxed{8}", traces.DROP_WRONG),
        ("<think>Wait, 3 and 4 make 7</think> \\boxed{7}", traces.DROP_EMPTY),
        ("<think>3 and 4 make 6. Wait, that is wrong</think> \\boxed{7}", traces.DROP_LOST_ANSWER),
        ("<think>" + "many words " * 300 + "so 7</think> \\boxed{7}", traces.DROP_TOO_LONG),
        ("<think>3 and 4 make 7. But wait, check: yes 7</think><answer>7</answer>", None),
    ],
)
def test_chain_verdicts(chain, reason):
    verdict = traces.judge_chain(chain, "7", None, TraceFilterConfig())
    assert verdict.drop_reason == reason
    if reason is None:
        assert verdict.trace.reasoning == "3 and 4 make 7."
        assert verdict.trace.truncated


def test_step_cli_distill(source_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "step",
            "distill",
            "--input",
            str(source_dir),
            "--output",
            str(tmp_path / "out"),
            "--set",
            "distill.k=2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout[result.stdout.index("{") :])["k"] == 2
