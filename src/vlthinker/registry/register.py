"""Registering candidates and the base: evaluation run, LoggedModel, model version with lineage tags.

Order of a registration (each step retried by :class:`~vlthinker.registry.client.Registry`):

1. every dataset the candidate saw is pushed to the DVC remote (or, given by hash only, checked to be
   there) — before anything reaches the registry, so a registered hash can always be fetched;
2. an MLflow run in the experiment named like the model holds the evaluation: flat metrics, the
   evaluation directory under ``evaluation/`` (predictions.jsonl, metrics.json, summaries, plot) and
   the predictions table (``evaluation/predictions_table.json``, shown by the MLflow UI); the run is
   created with a unique ``vlt.run_token`` tag looked up before every (re)try, so a lost answer to
   its creation does not leave a second run behind;
3. the checkpoint becomes a LoggedModel (``create_logged_model`` -> ``log_model_artifacts`` ->
   ``finalize_logged_model``; DESIGN §5: ``register_model`` on a plain run directory fails);
4. one ``create_model_version(source="models:/<model_id>", tags=...)`` call creates the version with
   all its lineage tags at once — a version exists with its whole lineage or not at all. The call is
   made idempotent by a unique ``vlt.candidate_id`` tag looked up before every (re)try.

A failure in 1–3 leaves no model version (the run is marked FAILED when MLflow still answers). A kill
leaves the run RUNNING and the logged model PENDING: the restarted registration of the same candidate
(same pipeline run id, iteration and stage) closes them first (:func:`close_interrupted_attempts`).

Version tags (all prefixed ``vlt.``): ``iteration``, ``stage`` (sft/rl), ``parent_version`` (a version
number, or ``base``), ``git_commit``, ``pipeline_run_id``, ``config_hash``, ``eval_run_id``,
``candidate_id``, ``dvc_remote``, ``datasets`` (JSON: role, md5, remote url, derived_from),
``dataset.<role>`` (md5, one per dataset), ``benchmarks`` (JSON: name -> dataset md5), ``metrics``
(JSON headline metrics) and ``metric.<name>`` per headline metric. The gate adds ``gate`` and
``decision``.

The base model is not a version: :func:`record_base` logs its evaluation as a run and stores a JSON
summary in the registered model's ``vlt.base`` tag (one write). With no champion yet, the gate
compares the first candidate with it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlthinker.registry.client import BASE_TAG, Registry, RegistryError, _quote, create_run_once

EVAL_ARTIFACTS = "evaluation"
TABLE_COLUMNS = (
    "key",
    "benchmark",
    "id",
    "task",
    "difficulty",
    "answer",
    "extracted",
    "correct",
    "format_ok",
    "response",
)
_ROLE_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-:")


@dataclass(frozen=True)
class DatasetInput:
    """A dataset a model saw: a directory to push, or the md5 of one already in the remote."""

    role: str
    path: Path | None = None
    md5: str | None = None
    derived_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.role or set(self.role) - _ROLE_CHARS:
            raise RegistryError(f"dataset role {self.role!r}: use lower-case letters, digits, '_', '-', ':'")
        if (self.path is None) == (self.md5 is None):
            raise RegistryError(f"dataset {self.role!r}: give either a directory or an md5 hash")


@dataclass(frozen=True)
class Provenance:
    """Where a candidate comes from: iteration, stage, parent version (None = the base), run ids."""

    iteration: int
    stage: str = "rl"
    parent_version: int | None = None
    git_commit: str | None = None
    pipeline_run_id: str | None = None
    config_hash: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def candidate_tags(self) -> dict[str, str]:
        """The tags that name this candidate (on its version, evaluation run and logged model)."""
        return {
            "vlt.iteration": str(self.iteration),
            "vlt.stage": self.stage,
            "vlt.pipeline_run_id": self.pipeline_run_id or "none",
        }


def detect_git_commit(cwd: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the working directory, or None outside a repository."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def parse_dataset_spec(spec: str) -> DatasetInput:
    """``ROLE=DIR`` or ``ROLE=md5:<hash>``, optionally ``@from1,from2`` (roles it was derived from)."""
    if "=" not in spec:
        raise RegistryError(f"dataset {spec!r}: expected ROLE=DIR[@FROM,...] or ROLE=md5:HASH[@FROM,...]")
    role, rest = spec.split("=", 1)
    derived: tuple[str, ...] = ()
    if "@" in rest:
        rest, origin = rest.rsplit("@", 1)
        derived = tuple(r.strip() for r in origin.split(",") if r.strip())
    if rest.startswith("md5:"):
        return DatasetInput(role=role.strip(), md5=rest[4:].strip(), derived_from=derived)
    return DatasetInput(role=role.strip(), path=Path(rest), derived_from=derived)


# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------


def _benchmark_inputs(metrics: dict[str, Any]) -> list[DatasetInput]:
    """The evaluation sets an evaluation read (their directories, when they still exist)."""
    dirs = (metrics.get("info") or {}).get("benchmark_dirs") or {}
    found = []
    for name, directory in sorted(dirs.items()):
        if Path(directory).is_dir():
            found.append(DatasetInput(role=f"eval:{name}", path=Path(directory)))
    return found


def push_lineage_datasets(datasets: Sequence[DatasetInput], dvc_remote: str) -> list[dict[str, Any]]:
    """Push (or check) every dataset; return the lineage entries ``{role, md5, url, derived_from, path}``."""
    from vlthinker.datasets_dvc import DatasetStoreError, check_md5, object_url, push_datasets, remote_has

    roles = [d.role for d in datasets]
    duplicates = sorted({r for r in roles if roles.count(r) > 1})
    if duplicates:
        raise RegistryError(f"dataset roles must be unique, repeated: {', '.join(duplicates)}")
    to_push = [d for d in datasets if d.path is not None]
    pushed = dict(
        zip((d.role for d in to_push), push_datasets([d.path for d in to_push], dvc_remote), strict=True)
    )
    entries = []
    for dataset in datasets:
        md5 = pushed.get(dataset.role) or check_md5(dataset.md5 or "")
        if dataset.path is None and not remote_has(md5, dvc_remote):
            raise DatasetStoreError(f"dataset {dataset.role!r} ({md5}) is not in the DVC remote {dvc_remote}")
        entries.append(
            {
                "role": dataset.role,
                "md5": md5,
                "url": object_url(dvc_remote, md5),
                "derived_from": list(dataset.derived_from),
                "path": str(dataset.path) if dataset.path is not None else None,
            }
        )
    return entries


def _with_benchmarks(datasets: Sequence[DatasetInput], metrics: dict[str, Any]) -> list[DatasetInput]:
    from vlthinker.datasets_dvc import dir_md5

    known_roles = {d.role for d in datasets}
    known_paths = {str(d.path.resolve()) for d in datasets if d.path is not None}
    extra = [
        d
        for d in _benchmark_inputs(metrics)
        if d.role not in known_roles and str(d.path.resolve()) not in known_paths  # type: ignore[union-attr]
    ]
    hashes = {b.get("dataset_md5") for b in metrics["benchmarks"].values()}
    return list(datasets) + [d for d in extra if dir_md5(d.path) in hashes]  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Tracking run
# --------------------------------------------------------------------------------------------------


def log_evaluation_run(
    registry: Registry,
    eval_dir: str | Path,
    run_name: str,
    tags: dict[str, str],
    params: dict[str, str],
    extra_metrics: dict[str, float] | None = None,
) -> str:
    """An MLflow run holding one evaluation: metrics, artifacts, predictions table. Returns its id.

    ``extra_metrics`` are logged beside the evaluation's own (the base's step-by-step control)."""
    from mlflow.entities import Metric, Param

    from vlthinker.evaluation import flat_metrics, read_metrics, read_predictions

    metrics = read_metrics(eval_dir)
    rows = read_predictions(eval_dir)
    client = registry.client
    run = registry.call(  # one token for every attempt: a creation whose answer was lost is found
        f"create evaluation run {run_name}",
        create_run_once,
        client,
        registry.experiment_id(),
        uuid.uuid4().hex,
        run_name=run_name,
        tags=tags,
    )
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        registry.call(
            "log evaluation metrics",
            client.log_batch,
            run_id,
            metrics=[
                Metric(k, v, now, 0)
                for k, v in sorted({**flat_metrics(metrics), **(extra_metrics or {})}.items())
            ],
            params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items()) if v is not None],
        )
        registry.call("upload evaluation", client.log_artifacts, run_id, str(eval_dir), EVAL_ARTIFACTS)
        table = {column: [row.get(column) for row in rows] for column in TABLE_COLUMNS}
        registry.call(
            "log predictions table",
            client.log_table,
            run_id,
            table,
            f"{EVAL_ARTIFACTS}/predictions_table.json",
        )
        registry.call("finish evaluation run", client.set_terminated, run_id, "FINISHED")
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    return run_id


# --------------------------------------------------------------------------------------------------
# Candidates and the base
# --------------------------------------------------------------------------------------------------


def _lineage_tags(
    provenance: Provenance,
    entries: list[dict[str, Any]],
    metrics: dict[str, Any],
    run_id: str,
    candidate_id: str,
    dvc_remote: str,
) -> dict[str, str]:
    from vlthinker.evaluation import benchmark_hashes, headline_metrics

    headline = headline_metrics(metrics)
    tags = {
        **provenance.candidate_tags(),
        "vlt.parent_version": "base" if provenance.parent_version is None else str(provenance.parent_version),
        "vlt.git_commit": provenance.git_commit or "unknown",
        "vlt.config_hash": provenance.config_hash or "unknown",
        "vlt.eval_run_id": run_id,
        "vlt.candidate_id": candidate_id,
        "vlt.dvc_remote": dvc_remote,
        "vlt.datasets": json.dumps(entries, sort_keys=True),
        "vlt.benchmarks": json.dumps(benchmark_hashes(metrics), sort_keys=True),
        "vlt.metrics": json.dumps(headline, sort_keys=True),
        "vlt.prompt_style": str((metrics.get("info") or {}).get("prompt_style", "")),
    }
    tags.update({f"vlt.dataset.{e['role']}": e["md5"] for e in entries})
    tags.update({f"vlt.metric.{k}": f"{v:.6g}" for k, v in headline.items()})
    tags.update({f"vlt.{k}": v for k, v in provenance.extra.items()})
    return tags


def close_interrupted_attempts(registry: Registry, attempt: dict[str, str]) -> int:
    """Close what an earlier, killed registration of the same candidate left open; return the count.

    ``attempt`` holds the candidate's ``vlt.pipeline_run_id``, ``vlt.iteration`` and ``vlt.stage``
    tags. Its evaluation runs still RUNNING become KILLED and its logged models still PENDING become
    FAILED, tagged ``vlt.abandoned``. Neither can back a model version (a version is created last,
    from a READY model after a FINISHED run), so nothing registered is touched.
    """
    from mlflow.entities import LoggedModelStatus

    client = registry.client
    experiment = registry.experiment_id()
    where = " and ".join(f"tags.`{key}` = '{_quote(value)}'" for key, value in sorted(attempt.items()))
    runs = registry.call(
        "search interrupted evaluation runs",
        client.search_runs,
        [experiment],
        f"{where} and tags.`vlt.kind` = 'candidate' and attributes.status = 'RUNNING'",
    )
    models = registry.call(
        "search interrupted logged models", client.search_logged_models, [experiment], where
    )
    pending = [m for m in models if m.status == LoggedModelStatus.PENDING]
    for run in runs:
        registry.call(f"close run {run.info.run_id}", client.set_terminated, run.info.run_id, "KILLED")
    for model in pending:
        registry.call(
            f"tag logged model {model.model_id}",
            client.set_logged_model_tags,
            model.model_id,
            {"vlt.abandoned": "an interrupted registration; retried"},
        )
        registry.call(
            f"close logged model {model.model_id}", client.finalize_logged_model, model.model_id, "FAILED"
        )
    if runs or pending:
        registry.log(
            f"registry: closed {len(runs)} run(s) and {len(pending)} logged model(s) left open by an "
            "interrupted registration of this candidate"
        )
    return len(runs) + len(pending)


def register_candidate(
    registry: Registry,
    model_dir: str | Path,
    eval_dir: str | Path,
    provenance: Provenance,
    datasets: Sequence[DatasetInput] = (),
    dvc_remote: str | None = None,
    eval_run_id: str | None = None,
) -> int:
    """Push the datasets, log the evaluation, register the checkpoint; return the new version number.

    ``eval_run_id``: an evaluation run already logged from ``eval_dir`` (:func:`log_evaluation_run`,
    e.g. by the evaluate step) to link instead of logging a new one.
    """
    from vlthinker.evaluation import read_metrics

    model_path = Path(model_dir)
    if not model_path.is_dir():
        raise RegistryError(f"{model_path}: not a model directory")
    if provenance.parent_version is not None and registry.get_version(provenance.parent_version) is None:
        raise RegistryError(
            f"parent version {registry.model_name}/{provenance.parent_version} does not exist"
        )
    remote = dvc_remote or registry.stores.dvc_remote
    metrics = read_metrics(eval_dir)
    entries = push_lineage_datasets(_with_benchmarks(datasets, metrics), remote)
    registry.log(f"registry: {len(entries)} dataset(s) in the DVC remote {remote}")

    candidate_id = uuid.uuid4().hex
    name = registry.model_name
    attempt = provenance.candidate_tags()
    if provenance.pipeline_run_id:
        close_interrupted_attempts(registry, attempt)
    run_tags = {"vlt.kind": "candidate", **attempt}
    params = {
        "model_dir": str(model_path),
        "iteration": str(provenance.iteration),
        "stage": provenance.stage,
        "git_commit": provenance.git_commit,
        "pipeline_run_id": provenance.pipeline_run_id,
        "config_hash": provenance.config_hash,
        "prompt_style": str((metrics.get("info") or {}).get("prompt_style", "")),
    }
    if eval_run_id is not None:
        registry.call(f"get run {eval_run_id}", registry.client.get_run, eval_run_id)
        run_id = eval_run_id
    else:
        run_name = f"iter{provenance.iteration}-{provenance.stage}"
        run_id = log_evaluation_run(registry, eval_dir, run_name, run_tags, params)
    tags = _lineage_tags(provenance, entries, metrics, run_id, candidate_id, remote)

    client = registry.client
    logged = registry.call(
        "create logged model",
        client.create_logged_model,
        registry.experiment_id(),
        name=name,
        source_run_id=run_id,
        tags={"vlt.candidate_id": candidate_id, **attempt},
    )
    try:
        registry.call("upload model", client.log_model_artifacts, logged.model_id, str(model_path))
        registry.call("finalize logged model", client.finalize_logged_model, logged.model_id, "READY")
    except BaseException:
        with contextlib.suppress(Exception):
            client.finalize_logged_model(logged.model_id, "FAILED")
        raise
    registry.ensure_model()

    def create_once() -> Any:
        existing = client.search_model_versions(
            f"name = '{_quote(name)}' and tags.`vlt.candidate_id` = '{candidate_id}'"
        )
        if existing:
            return existing[0]
        return client.create_model_version(
            name, source=f"models:/{logged.model_id}", run_id=run_id, tags=tags, model_id=logged.model_id
        )

    version = registry.call(f"create version of {name}", create_once)
    number = int(version.version)
    registry.log(
        f"registry: registered {name}/{number} (iteration {provenance.iteration}, {provenance.stage})"
    )
    return number


def record_base(
    registry: Registry,
    eval_dir: str | Path,
    model_ref: str,
    datasets: Sequence[DatasetInput] = (),
    dvc_remote: str | None = None,
    reasoning_metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Record the base model's evaluation (run + the registered model's ``vlt.base`` tag); return the record.

    ``reasoning_metrics``: the base asked to reason step by step on the same items, kept in the record
    as ``reasoning_control`` and logged on the base's evaluation run as ``reasoning_control_<metric>``
    (a control for people: the gate compares with ``metrics``).
    """
    from vlthinker.evaluation import benchmark_hashes, headline_metrics, read_metrics

    remote = dvc_remote or registry.stores.dvc_remote
    metrics = read_metrics(eval_dir)
    entries = push_lineage_datasets(_with_benchmarks(datasets, metrics), remote)
    run_id = log_evaluation_run(
        registry,
        eval_dir,
        "base",
        {"vlt.kind": "base"},
        {"model": model_ref, "prompt_style": str((metrics.get("info") or {}).get("prompt_style", ""))},
        {f"reasoning_control_{key}": value for key, value in (reasoning_metrics or {}).items()},
    )
    record = {
        "model": model_ref,
        "run_id": run_id,
        "metrics": headline_metrics(metrics),
        "benchmarks": benchmark_hashes(metrics),
        "datasets": entries,
        "dvc_remote": remote,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if reasoning_metrics is not None:
        record["reasoning_control"] = dict(reasoning_metrics)
    registry.ensure_model()
    registry.set_model_tag(BASE_TAG, json.dumps(record, sort_keys=True))
    registry.log(f"registry: base {model_ref} recorded on {registry.model_name} (run {run_id})")
    return record
