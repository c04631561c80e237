"""Evaluate step: greedy evaluation of one model on the configured benchmarks (DVC stage / KFP component).

Writes the evaluation directory (:mod:`vlthinker.evaluation`); :func:`kfp_outputs` gives a component
what it exposes to KFP (``Metrics.log_metric`` per flat metric, the Markdown and HTML summaries).
Logging to MLflow happens when the result is registered (:mod:`vlthinker.steps.gate`), or here with
``stores`` given (a standalone evaluation run whose id registration can reuse).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vlthinker.config import Config
from vlthinker.errors import ConfigError
from vlthinker.state import Stores

Log = Callable[[str], None]


def parse_benchmark_specs(specs: list[str]) -> dict[str, Path]:
    """``NAME=DIR`` items (``--benchmark``) into ``{name: dir}``; a bare DIR is the held-out set."""
    found: dict[str, Path] = {}
    for spec in specs:
        name, _, path = spec.rpartition("=") if "=" in spec else ("heldout", "", spec)
        if name in found:
            raise ConfigError(f"--benchmark {spec!r}: benchmark {name!r} given twice")
        found[name.strip()] = Path(path)
    return found


def evaluate_step(
    config: Config,
    model_dir: str | Path,
    benchmarks: Mapping[str, str | Path],
    output_dir: str | Path,
    prompt_style: str = "reasoning",
    log: Log = print,
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on every configured benchmark (``benchmarks`` maps each name to its dir)."""
    from vlthinker.evaluation import evaluate_model

    ev = config.evaluation
    missing = [name for name in ev.benchmarks if name not in benchmarks]
    if missing:
        raise ConfigError(
            f"evaluation.benchmarks lists {', '.join(missing)} but no directory was given for it "
            "(--benchmark NAME=DIR; import MathVista & co. with `vlthinker data import`)"
        )
    for name, path in benchmarks.items():
        if not Path(path).is_dir():
            raise ConfigError(f"benchmark {name!r}: {path} is not a dataset directory")
    return evaluate_model(
        model_dir,
        dict(benchmarks),
        output_dir,
        prompt_style=prompt_style,  # type: ignore[arg-type]
        sampling=ev.sampling(),
        batch_size=ev.batch_size,
        limit=ev.limit,
        log=log,
        info={"config_hash": config.content_hash()},
    )


def kfp_outputs(eval_dir: str | Path) -> tuple[dict[str, float], str, str]:
    """(flat metrics, Markdown summary, HTML summary) of an evaluation directory, for a KFP component."""
    from vlthinker.evaluation import SUMMARY_HTML, SUMMARY_MD, flat_metrics, read_metrics

    directory = Path(eval_dir)
    return (
        flat_metrics(read_metrics(directory)),
        (directory / SUMMARY_MD).read_text(),
        (directory / SUMMARY_HTML).read_text(),
    )


def log_evaluation(config: Config, stores: Stores, eval_dir: str | Path, name: str, log: Log = print) -> str:
    """Log an evaluation directory as an MLflow run (metrics, artifacts, predictions table); return its id."""
    from vlthinker.evaluation import read_metrics
    from vlthinker.registry.client import open_registry
    from vlthinker.registry.register import log_evaluation_run

    info = read_metrics(eval_dir).get("info") or {}
    return log_evaluation_run(
        open_registry(config, stores, log),
        eval_dir,
        f"evaluate-{name}",
        {"vlt.kind": "evaluation"},
        {"model": str(info.get("model", name)), "prompt_style": str(info.get("prompt_style", ""))},
    )
