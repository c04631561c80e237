"""Register / record-base / gate steps: the registry side of an iteration (DVC stage / KFP component).

* :func:`record_base_step` — the base model's evaluation, recorded once (the first gate compares with it);
* :func:`register_step` — push the datasets a candidate saw to the DVC remote, then register it with
  its lineage (iteration, parent version, dataset hashes, git commit, pipeline run id, config hash);
* :func:`gate_step` — the paired-test gate with the lock; prints a short report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vlthinker.config import Config
from vlthinker.state import Stores

Log = Callable[[str], None]


def _registry(config: Config, stores: Stores, log: Log):
    from vlthinker.registry.client import open_registry

    return open_registry(config, stores, log)


def record_base_step(
    config: Config,
    stores: Stores,
    eval_dir: str | Path,
    model_ref: str,
    datasets: Sequence[Any] = (),
    log: Log = print,
    reasoning_metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    from vlthinker.registry.register import record_base

    return record_base(
        _registry(config, stores, log), eval_dir, model_ref, datasets, stores.dvc_remote, reasoning_metrics
    )


def register_step(
    config: Config,
    stores: Stores,
    model_dir: str | Path,
    eval_dir: str | Path,
    iteration: int,
    stage: str = "rl",
    parent_version: int | None = None,
    datasets: Sequence[Any] = (),
    pipeline_run_id: str | None = None,
    git_commit: str | None = None,
    eval_run_id: str | None = None,
    log: Log = print,
) -> int:
    from vlthinker.registry.register import Provenance, detect_git_commit, register_candidate

    provenance = Provenance(
        iteration=iteration,
        stage=stage,
        parent_version=parent_version,
        git_commit=git_commit or detect_git_commit(),
        pipeline_run_id=pipeline_run_id,
        config_hash=config.content_hash(),
    )
    return register_candidate(
        _registry(config, stores, log),
        model_dir,
        eval_dir,
        provenance,
        datasets,
        stores.dvc_remote,
        eval_run_id,
    )


def gate_step(config: Config, stores: Stores, version: int, log: Log = print):
    """Gate ``version`` against the champion (or the base); returns the :class:`GateResult`."""
    from vlthinker.registry.gate import GateSettings, gate_version

    result = gate_version(_registry(config, stores, log), version, GateSettings.from_config(config.registry))
    log(result.report())
    return result
