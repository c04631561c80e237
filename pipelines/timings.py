"""Per-step timings of a local run, from the lines the components print (``vlthinker.tasks.timing``).

kfp.local prints ``Executing task 'NAME'`` before each task it runs and streams the task's output;
each component prints one ``vlthinker-step-time: {...}`` line with its own compute time. This module
pairs them and writes the run's timings file (``STATE_DIR/logs/run-<time>.timings.json``)::

    {"wall_seconds": float, "steps_seconds": float, "steps_run": int,
     "steps": [{"task": "sft-2", "step": "sft", "seconds": float, "ok": bool}, ...]}

``steps_seconds`` sums the steps that ran in this run (cached steps print nothing); the ratio
``wall_seconds / steps_seconds`` is the orchestration overhead (``bench/bench_pipeline.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vlthinker.tasks.timing import MARK

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXECUTING = re.compile(r"Executing task '([^']+)'")


def parse_timings(text: str) -> list[dict[str, Any]]:
    """The timed steps of a run's output, in order, each with the kfp task name it ran as."""
    steps: list[dict[str, Any]] = []
    task = None
    for raw in text.splitlines():
        line = _ANSI.sub("", raw)
        executing = _EXECUTING.search(line)
        if executing:
            task = executing.group(1)
            continue
        at = line.find(MARK)
        if at < 0:
            continue
        try:
            payload = json.loads(line[at + len(MARK) :])
        except json.JSONDecodeError:
            continue  # a line cut short (the step was killed mid-print): not a timing
        steps.append(
            {
                "task": task,
                "step": str(payload.get("step")),
                "seconds": float(payload.get("seconds", 0.0)),
                "ok": bool(payload.get("ok")),
            }
        )
    return steps


def timings_summary(text: str, wall_seconds: float) -> dict[str, Any]:
    steps = parse_timings(text)
    return {
        "wall_seconds": wall_seconds,
        "steps_seconds": sum(s["seconds"] for s in steps),
        "steps_run": len(steps),
        "steps": steps,
    }


def timings_path(log_file: str | Path) -> Path:
    log_file = Path(log_file)
    return log_file.with_name(log_file.stem + ".timings.json")


def write_timings(log_file: str | Path, wall_seconds: float) -> dict[str, Any]:
    """Read the run's full log, write its timings file beside it; return the summary."""
    summary = timings_summary(Path(log_file).read_text(encoding="utf-8", errors="replace"), wall_seconds)
    timings_path(log_file).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def read_timings(log_file: str | Path) -> dict[str, Any]:
    path = timings_path(log_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no timings file (the run did not finish?)")
    return json.loads(path.read_text(encoding="utf-8"))
