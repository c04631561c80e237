r"""Evaluation: greedy answers on benchmark datasets, graded per item, summed up per task and difficulty.

Two layers:

* pure scoring — :func:`score_response` turns (record, model response) into one row of the
  predictions table; :func:`compute_metrics` turns rows into metrics (overall and per benchmark:
  accuracy, answer-format rate, per task, per difficulty); :func:`flat_metrics` flattens them into
  the ``name -> float`` form MLflow and KFP take (``heldout_accuracy``, ``mathvista_format_rate``,
  ``heldout_task_count_accuracy``, ...). Grading is :func:`vlthinker.answers.grade`, the only grader.
* :func:`evaluate_model` — loads a model through the backends, prompts every item, decodes greedily
  (DESIGN §6: the paper evaluates with temperature 0.01 / top_k 1, i.e. greedy) and writes the
  results with :func:`write_results`.

Prompt styles: ``reasoning`` (our SFT/RL models: :func:`~vlthinker.prompts.reasoning_question`, the
format is ``<think>...</think><answer>...</answer>``, checked by :func:`~vlthinker.answers.format_ok`)
and ``direct`` (the base model, as the paper prompts its baseline:
:func:`~vlthinker.prompts.direct_question`, the format is a ``\boxed{}`` answer). Accuracy never
requires the format (the answer is extracted leniently, as the benchmarks do); the format rate is
reported beside it.

A benchmark is a dataset directory with a name (``heldout`` — the built-in synthetic held-out set —
or an adapter's name: ``mathvista``, ``mathverse``, ``mathvision``). Its identity is the DVC md5 of
the directory: two evaluations are comparable item by item only on benchmarks with the same hash.
Items are keyed ``<benchmark>/<record id>``.

Output directory (written atomically): ``predictions.jsonl`` (one row per item), ``metrics.json``,
``summary.md``, ``summary.html`` and ``accuracy.png``.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from vlthinker.errors import VLThinkerError
from vlthinker.fsutil import swap_into_place

PromptStyle = Literal["reasoning", "direct"]
PROMPT_STYLES: tuple[str, ...] = ("reasoning", "direct")
BUILTIN_BENCHMARKS: tuple[str, ...] = ("heldout", "mathvista", "mathverse", "mathvision")

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
SUMMARY_MD = "summary.md"
SUMMARY_HTML = "summary.html"
PLOT_FILE = "accuracy.png"

Log = Callable[[str], None]
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


class EvaluationError(VLThinkerError):
    """An evaluation could not run or its results cannot be read."""


# --------------------------------------------------------------------------------------------------
# Pure scoring
# --------------------------------------------------------------------------------------------------


def check_benchmark_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise EvaluationError(f"benchmark name {name!r}: use lower-case letters, digits, '_' and '-'")
    return name


def item_key(benchmark: str, record_id: str) -> str:
    return f"{benchmark}/{record_id}"


def build_prompt(question: str, style: PromptStyle) -> list[dict[str, Any]]:
    """The conversation an item is asked with (image first, then the styled question)."""
    from vlthinker.prompts import direct_question, reasoning_question, user_message

    if style not in PROMPT_STYLES:
        raise EvaluationError(f"prompt style {style!r}: expected one of {', '.join(PROMPT_STYLES)}")
    text = reasoning_question(question) if style == "reasoning" else direct_question(question)
    return user_message(text)


def format_followed(response: str, style: PromptStyle) -> bool:
    r"""Did the response use the answer format its prompt asked for (``<think>/<answer>`` or ``\boxed{}``)?"""
    from vlthinker.answers import extract_answer, format_ok

    if style == "reasoning":
        return format_ok(response)
    return (
        bool(isinstance(response, str) and _BOXED_RE.search(response))
        and extract_answer(response) is not None
    )


def score_response(record: Any, response: str, style: PromptStyle, benchmark: str) -> dict[str, Any]:
    """One predictions-table row: the item, the raw response, the extracted answer and its grade."""
    from vlthinker.answers import extract_answer, grade

    extracted = extract_answer(response)
    extra = getattr(record, "model_extra", None) or {}
    correct = grade(
        extracted,
        record.answer,
        record.choices,
        answer_type=extra.get("answer_type") or None,
        precision=extra.get("precision"),
    )
    return {
        "key": item_key(benchmark, record.id),
        "benchmark": benchmark,
        "id": record.id,
        "task": record.task,
        "difficulty": record.difficulty,
        "question": record.question,
        "answer": record.answer,
        "response": response,
        "extracted": extracted,
        "correct": bool(correct),
        "format_ok": format_followed(response, style),
    }


def _group(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    n = len(rows)
    return {
        "n": n,
        "correct": sum(bool(r["correct"]) for r in rows),
        "accuracy": sum(bool(r["correct"]) for r in rows) / n if n else 0.0,
        "format_rate": sum(bool(r["format_ok"]) for r in rows) / n if n else 0.0,
    }


def _by(rows: Sequence[Mapping[str, Any]], field: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        value = row.get(field)
        groups["none" if value is None else str(value)].append(row)
    return {name: _group(members) for name, members in sorted(groups.items())}


def compute_metrics(
    rows: Sequence[Mapping[str, Any]], benchmark_hashes: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Accuracy and format rate overall and per benchmark, with per-task and per-difficulty breakdowns."""
    by_benchmark: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_benchmark[row["benchmark"]].append(row)
    benchmarks = {}
    for name, members in sorted(by_benchmark.items()):
        entry = _group(members)
        entry["per_task"] = _by(members, "task")
        entry["per_difficulty"] = _by(members, "difficulty")
        if benchmark_hashes and name in benchmark_hashes:
            entry["dataset_md5"] = benchmark_hashes[name]
        benchmarks[name] = entry
    overall = _group(rows)
    return {**overall, "benchmarks": benchmarks}


def _metric_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``name -> float`` for MLflow / KFP: overall, per benchmark, per task, per difficulty."""
    flat: dict[str, float] = {
        "accuracy": float(metrics["accuracy"]),
        "format_rate": float(metrics["format_rate"]),
        "n_items": float(metrics["n"]),
    }
    for name, bench in metrics["benchmarks"].items():
        flat[f"{name}_accuracy"] = float(bench["accuracy"])
        flat[f"{name}_format_rate"] = float(bench["format_rate"])
        flat[f"{name}_n"] = float(bench["n"])
        for task, score in bench["per_task"].items():
            flat[_metric_name(f"{name}_task_{task}_accuracy")] = float(score["accuracy"])
        for level, score in bench["per_difficulty"].items():
            flat[_metric_name(f"{name}_difficulty_{level}_accuracy")] = float(score["accuracy"])
    return flat


def headline_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The few numbers worth a registry tag: overall and per-benchmark accuracy and format rate."""
    flat = flat_metrics(metrics)
    return {k: v for k, v in flat.items() if "_task_" not in k and "_difficulty_" not in k}


def correctness(rows: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
    """``item key -> correct``: what the promotion gate pairs."""
    return {row["key"]: bool(row["correct"]) for row in rows}


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def summary_markdown(metrics: Mapping[str, Any], title: str = "Evaluation") -> str:
    lines = [
        f"# {title}",
        "",
        f"Overall: **{_pct(metrics['accuracy'])}** accuracy on {metrics['n']} items "
        f"(answer-format rate {_pct(metrics['format_rate'])}).",
        "",
        "| benchmark | items | accuracy | format rate | dataset md5 |",
        "|---|---:|---:|---:|---|",
    ]
    for name, bench in metrics["benchmarks"].items():
        lines.append(
            f"| {name} | {bench['n']} | {_pct(bench['accuracy'])} | {_pct(bench['format_rate'])} "
            f"| {bench.get('dataset_md5', '')} |"
        )
    for name, bench in metrics["benchmarks"].items():
        for field, label in (("per_task", "task"), ("per_difficulty", "difficulty")):
            lines += ["", f"## {name}: by {label}", "", f"| {label} | items | accuracy |", "|---|---:|---:|"]
            for group, score in bench[field].items():
                lines.append(f"| {group} | {score['n']} | {_pct(score['accuracy'])} |")
    return "\n".join(lines) + "\n"


def summary_html(metrics: Mapping[str, Any], title: str = "Evaluation") -> str:
    """A self-contained HTML summary (tables and CSS bars), for the KFP HTML visualisation."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}"
        ".bar{background:#4878d0;height:10px}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>Overall <b>{_pct(metrics['accuracy'])}</b> accuracy on {metrics['n']} items; "
        f"answer-format rate {_pct(metrics['format_rate'])}.</p>",
    ]
    for name, bench in metrics["benchmarks"].items():
        parts.append(
            f"<h2>{esc(name)}: {_pct(bench['accuracy'])} ({bench['n']} items, format "
            f"{_pct(bench['format_rate'])})</h2><table><tr><th>group</th><th>items</th><th>accuracy</th>"
            "<th></th></tr>"
        )
        for field, label in (("per_task", "task"), ("per_difficulty", "difficulty")):
            for group, score in bench[field].items():
                width = round(200 * score["accuracy"])
                parts.append(
                    f"<tr><td>{label} {esc(group)}</td><td>{score['n']}</td><td>{_pct(score['accuracy'])}"
                    f"</td><td><div class='bar' style='width:{width}px'></div></td></tr>"
                )
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def plot_accuracy(metrics: Mapping[str, Any], path: str | Path, title: str = "Evaluation") -> Path:
    """Bar chart: accuracy per benchmark and per task (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels, values = [], []
    for name, bench in metrics["benchmarks"].items():
        labels.append(f"{name} (all)")
        values.append(bench["accuracy"])
        for task, score in bench["per_task"].items():
            labels.append(f"{name}/{task}")
            values.append(score["accuracy"])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(labels) + 1.5), 3.5))
    try:
        ax.bar(range(len(labels)), [100 * v for v in values], color="#4878d0")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
    finally:
        plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def write_results(
    output_dir: str | Path,
    rows: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any] | None = None,
    benchmark_hashes: Mapping[str, str] | None = None,
    title: str = "Evaluation",
) -> dict[str, Any]:
    """Write predictions, metrics (with ``info``), summaries and the plot into ``output_dir`` atomically."""
    metrics = compute_metrics(rows, benchmark_hashes)
    payload = {**metrics, "info": dict(info or {})}
    output = Path(output_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        with (tmp / PREDICTIONS_FILE).open("w", encoding="utf-8", newline="\n") as handle:
            for row in rows:
                handle.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        (tmp / METRICS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        (tmp / SUMMARY_MD).write_text(summary_markdown(metrics, title))
        (tmp / SUMMARY_HTML).write_text(summary_html(metrics, title))
        plot_accuracy(metrics, tmp / PLOT_FILE, title)
        swap_into_place(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return payload


def read_predictions(eval_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(eval_dir) / PREDICTIONS_FILE
    if not path.is_file():
        raise EvaluationError(f"{path}: not found (is {eval_dir} the output of an evaluation?)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_metrics(eval_dir: str | Path) -> dict[str, Any]:
    path = Path(eval_dir) / METRICS_FILE
    if not path.is_file():
        raise EvaluationError(f"{path}: not found (is {eval_dir} the output of an evaluation?)")
    return json.loads(path.read_text())


def benchmark_hashes(metrics: Mapping[str, Any]) -> dict[str, str]:
    return {name: b["dataset_md5"] for name, b in metrics["benchmarks"].items() if b.get("dataset_md5")}


# --------------------------------------------------------------------------------------------------
# Running a model
# --------------------------------------------------------------------------------------------------


def _load_items(dataset_dir: Path, limit: int | None) -> list[tuple[Any, Any]]:
    from PIL import Image

    from vlthinker.records import iter_records

    items = []
    for record in iter_records(dataset_dir):
        if limit is not None and len(items) >= limit:
            break
        with Image.open(dataset_dir / record.image) as image:
            items.append((record, image.convert("RGB")))
    return items


def evaluate_model(
    model_dir: str | Path,
    benchmarks: Mapping[str, str | Path] | str | Path,
    output_dir: str | Path,
    prompt_style: PromptStyle = "reasoning",
    sampling: Any | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    backend: Any | None = None,
    log: Log | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Answer every item of every benchmark with ``model_dir`` and write the results into ``output_dir``.

    ``benchmarks``: ``{name: dataset_dir}``, or one dataset directory (named ``heldout``).
    ``sampling``: :class:`~vlthinker.backends.base.SamplingParams` (default: greedy, 256 new tokens).
    ``limit``: at most this many items per benchmark. ``backend``: an open backend to use instead of
    loading ``model_dir`` through the hf backend. Returns the metrics written to ``metrics.json``.
    """
    from vlthinker.backends.base import BackendConfig, SamplingParams, make_backend
    from vlthinker.datasets_dvc import dir_md5

    say = log or (lambda _message: None)
    if not isinstance(benchmarks, Mapping):
        benchmarks = {"heldout": benchmarks}
    if not benchmarks:
        raise EvaluationError("no benchmark to evaluate on")
    params = sampling or SamplingParams(max_new_tokens=256, temperature=0.0)
    if params.n != 1:
        raise EvaluationError(f"evaluation takes one completion per item, got n={params.n}")
    build_prompt("", prompt_style)  # validates the style before loading anything
    sets = {}
    hashes = {}
    for name, path in benchmarks.items():
        directory = Path(path)
        sets[check_benchmark_name(name)] = _load_items(directory, limit)
        hashes[name] = dir_md5(directory)
        say(f"evaluate: {name}: {len(sets[name])} items from {directory} ({hashes[name]})")
    own_backend = backend is None
    if own_backend:
        backend = make_backend(BackendConfig(kind="hf", model=str(model_dir), batch_size=batch_size))
    rows: list[dict[str, Any]] = []
    try:
        for name, items in sets.items():
            prompts = [build_prompt(record.question, prompt_style) for record, _ in items]
            outputs = backend.generate(
                prompts,
                [image for _, image in items],
                params,
                progress=lambda done, total, name=name: say(f"evaluate: {name}: {done}/{total}"),
            )
            rows += [
                score_response(record, completions[0], prompt_style, name)
                for (record, _), completions in zip(items, outputs, strict=True)
            ]
    finally:
        if own_backend:
            backend.close()
    meta = {
        "model": str(model_dir),
        "prompt_style": prompt_style,
        "temperature": params.temperature,
        "max_new_tokens": params.max_new_tokens,
        "limit": limit,
        "benchmark_dirs": {name: str(Path(path).resolve()) for name, path in benchmarks.items()},
        **dict(info or {}),
    }
    payload = write_results(
        output_dir, rows, meta, hashes, title=f"Evaluation of {Path(str(model_dir)).name}"
    )
    say(
        f"evaluate: accuracy {_pct(payload['accuracy'])} on {payload['n']} items, "
        f"format rate {_pct(payload['format_rate'])}; results in {output_dir}"
    )
    return payload
