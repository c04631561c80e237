"""Registry tasks: record the base's scores; register each candidate with lineage and gate it
(and, with ``registry.register_sft``, the iteration's SFT model, not gated).

Re-running a pipeline (after a crash, a SIGKILL, or with the cache off) never registers a candidate
twice and never loses a decision:

* a version is looked up by (pipeline run label, iteration, stage) first; one version is created by
  one call with all its lineage tags, so it exists whole or not at all, and a run killed before that
  call (an evaluation run or a logged model left behind) registers afresh;
* a gate killed while it held the lock left an unfinished lock epoch: it is settled first (its
  journaled decision rolled forward; a dead holder on this host is taken over at once, see
  :mod:`vlthinker.registry.lock`), then a version that has a decision is not gated again.

Test-only pause points (``VLTHINKER_FAULT_PAUSE``, inert by default) are documented in
:mod:`vlthinker.tasks.pause`.
"""

from __future__ import annotations

from typing import Any

from vlthinker.config import Config
from vlthinker.model.refs import resolve_model_ref
from vlthinker.state import resolve_stores


def _stores(state_dir: str, tracking_uri: str, dvc_remote: str):
    return resolve_stores(state_dir, tracking_uri or None, dvc_remote or None)


def find_version(registry, run_label: str, iteration: int, stage: str) -> int | None:
    for mv in registry.versions():
        tags = dict(mv.tags or {})
        if (
            tags.get("vlt.pipeline_run_id") == run_label
            and tags.get("vlt.iteration") == str(iteration)
            and tags.get("vlt.stage") == stage
        ):
            return int(mv.version)
    return None


def record_count(dataset_dir: str) -> int:
    from pathlib import Path

    path = Path(dataset_dir) / "records.jsonl"
    return sum(1 for line in path.open("rb") if line.strip()) if path.is_file() else 0


def record_base(
    config: Config,
    state_dir: str,
    tracking_uri: str,
    dvc_remote: str,
    model_dir: str,
    eval_dir: str,
    reasoning_eval_dir: str | None = None,
):
    """Record the base's direct answers (the gate's reference) and, as a control the gate does not
    use, the base asked to reason step by step on the same items (``reasoning_eval_dir``)."""
    from vlthinker.steps.gate import record_base_step

    stores = _stores(state_dir, tracking_uri, dvc_remote)
    reasoning = same_items_metrics(eval_dir, reasoning_eval_dir) if reasoning_eval_dir else None
    return record_base_step(
        config, stores, eval_dir, resolve_model_ref(model_dir), reasoning_metrics=reasoning
    )


def lineage_inputs(datasets: dict[str, dict[str, Any]]) -> list:
    """DatasetInputs from artifact metadata: the hashes the data steps pushed to the DVC remote."""
    from vlthinker.registry.register import DatasetInput

    derived = {"train": (), "sft_data": ("train",), "rl_data": ("train",)}
    return [
        DatasetInput(role=role, md5=datasets[role]["dvc_md5"], derived_from=derived[role])
        for role in ("train", "sft_data", "rl_data")
        if role in datasets
    ]


def same_items_metrics(reference_eval_dir: str, control_eval_dir: str) -> dict[str, float]:
    """The headline metrics of a control evaluation scored on the reference evaluation's very items.

    A control (the SFT model beside the candidate, the base asked to reason beside its direct
    answers) says something about the reference only on the same items, so other items are refused.
    """
    from vlthinker.evaluation import (
        benchmark_hashes,
        correctness,
        headline_metrics,
        read_metrics,
        read_predictions,
    )
    from vlthinker.registry.client import RegistryError

    control = read_metrics(control_eval_dir)
    hashes = benchmark_hashes(read_metrics(reference_eval_dir)), benchmark_hashes(control)
    items = [set(correctness(read_predictions(d))) for d in (reference_eval_dir, control_eval_dir)]
    if hashes[0] != hashes[1] or items[0] != items[1]:
        raise RegistryError(
            f"control evaluation {control_eval_dir} was not scored on the items of the evaluation "
            f"{reference_eval_dir} (benchmarks {hashes[1]} vs {hashes[0]}): a control must use the same items"
        )
    return headline_metrics(control)


def control_tags(candidate_eval_dir: str, control_eval_dir: str) -> dict[str, str]:
    """``{"sft_control_<metric>": value}`` for the SFT control evaluated on the candidate's very items.

    The registry records it beside the candidate (tags ``vlt.sft_control_accuracy``, ...) so what
    GRPO added is the candidate's accuracy minus the control's; it plays no part in the gate.
    """
    metrics = same_items_metrics(candidate_eval_dir, control_eval_dir)
    return {f"sft_control_{key}": f"{value:.6g}" for key, value in metrics.items()}


def parent_version(
    registry, run_label: str, iteration: int, datasets: dict[str, dict[str, Any]]
) -> int | None:
    """The version whose traces this iteration trained on: the model its SFT data names
    (``generator_version``, set when it self-generated with the champion; 0 is the base), else the
    previous iteration's RL version of this run (None in iteration 1: the teacher and the base)."""
    generator = datasets.get("sft_data", {}).get("generator_version")
    if generator is not None:
        return int(generator) or None
    return find_version(registry, run_label, iteration - 1, "rl") if iteration > 1 else None


def candidate_provenance(
    config: Config,
    run_label: str,
    iteration: int,
    stage: str,
    parent: int | None,
    datasets: dict[str, dict[str, Any]],
    tags: dict[str, str] | None = None,
):
    """The provenance of this run's ``stage`` model of ``iteration``: the record count of each
    dataset it trained on, plus ``tags``."""
    from vlthinker.registry.register import Provenance, detect_git_commit

    records = {
        f"{role}_records": str(record_count(meta["path"]))
        for role, meta in datasets.items()
        if "path" in meta
    }
    return Provenance(
        iteration=iteration,
        stage=stage,
        parent_version=parent,
        git_commit=detect_git_commit(),
        pipeline_run_id=run_label,
        config_hash=config.content_hash(),
        extra={**records, **(tags or {})},
    )


def register_sft_model(
    config: Config,
    registry,
    stores,
    run_label: str,
    iteration: int,
    parent: int | None,
    model_dir: str | None,
    eval_dir: str | None,
    datasets: dict[str, dict[str, Any]],
) -> int:
    """Register the iteration's SFT model (once) as a version of stage ``sft``; return its number.

    The paper reports each iteration's SFT model beside its RL model; this records it in the registry
    with the same lineage (the training set and the SFT data, not the RL data, which it never saw),
    evaluated on the candidate's items. It is not gated: it never becomes the champion.
    """
    from pathlib import Path

    from vlthinker.registry.client import RegistryError
    from vlthinker.registry.register import register_candidate

    missing = [
        f"{name} ({path or 'not given'})"
        for name, path in (("the SFT model", model_dir), ("its evaluation", eval_dir))
        if not path or not Path(path).is_dir()
    ]
    if missing:
        raise RegistryError(
            f"registry.register_sft is on but iteration {iteration} has no {' and no '.join(missing)}: "
            "nothing registered"
        )
    version = find_version(registry, run_label, iteration, "sft")
    if version is not None:
        return version
    seen = {role: meta for role, meta in datasets.items() if role != "rl_data"}
    provenance = candidate_provenance(config, run_label, iteration, "sft", parent, seen)
    return register_candidate(
        registry, model_dir, eval_dir, provenance, lineage_inputs(seen), stores.dvc_remote
    )


def gate(
    config: Config,
    state_dir: str,
    tracking_uri: str,
    dvc_remote: str,
    run_label: str,
    iteration: int,
    model_dir: str,
    eval_dir: str,
    datasets: dict[str, dict[str, Any]],
    control_eval_dir: str | None = None,
    sft_model_dir: str | None = None,
) -> dict[str, Any]:
    """Register the iteration's RL model (once) with lineage, then gate it; return the decision.

    ``control_eval_dir``: the iteration's SFT model evaluated on the same items, recorded on the
    version (:func:`control_tags`). With ``registry.register_sft`` the SFT model itself
    (``sft_model_dir``) is registered first, with that evaluation, as a version of stage ``sft`` that
    is never gated (:func:`register_sft_model`); the RL version names it in ``vlt.sft_version``.
    """
    from vlthinker.registry.client import open_registry
    from vlthinker.registry.gate import GateSettings, gate_version, make_lock, recover
    from vlthinker.registry.register import register_candidate
    from vlthinker.tasks.pause import pause_after_registry_calls, pause_point

    stores = _stores(state_dir, tracking_uri, dvc_remote)
    registry = open_registry(config, stores, print)
    pause_after_registry_calls(registry, iteration)
    settings = GateSettings.from_config(config.registry)
    parent = parent_version(registry, run_label, iteration, datasets)
    sft_version = None
    if config.registry.register_sft:
        sft_version = register_sft_model(
            config, registry, stores, run_label, iteration, parent, sft_model_dir, control_eval_dir, datasets
        )
    version = find_version(registry, run_label, iteration, "rl")
    if version is None:
        provenance = candidate_provenance(
            config,
            run_label,
            iteration,
            "rl",
            parent,
            datasets,
            {
                **(control_tags(eval_dir, control_eval_dir) if control_eval_dir else {}),
                **({"sft_version": str(sft_version)} if sft_version is not None else {}),
            },
        )
        version = register_candidate(
            registry, model_dir, eval_dir, provenance, lineage_inputs(datasets), stores.dvc_remote
        )
    pause_point("gate:registered", iteration)
    if make_lock(registry, settings).pending() is not None:
        # a gate that died holding the lock: finish its journaled decision before reading decisions
        print(f"gate: settling the unfinished gate-lock epoch of {registry.model_name}")
        recover(registry, settings)
    existing = registry.get_version(version)
    tags = dict(existing.tags or {}) if existing is not None else {}
    if tags.get("vlt.decision"):
        print(f"gate: {registry.model_name}/{version} was already gated: {tags['vlt.decision']}")
        decision, report = tags["vlt.decision"], tags.get("vlt.gate", "")
    else:
        result = gate_version(
            registry, version, settings, on_phase=lambda phase: pause_point(f"gate:{phase}", iteration)
        )
        decision, report = result.decision, result.report()
        print(report)
    return {"version": version, "decision": decision, "report": report, "champion": registry.champion()}


def generator_model(
    config: Config,
    state_dir: str,
    tracking_uri: str,
    dvc_remote: str,
    champion: int,
    base_model_dir: str,
    scratch_dir: str,
) -> tuple[str, str]:
    """(model directory, label) of the model that self-generates with ``self_generate.model_from:
    champion``: version ``champion`` fetched from the registry into ``scratch_dir``, or the base model
    when there is no champion (``champion`` 0: the base stays the reference)."""
    from vlthinker.registry.client import open_registry

    if champion <= 0:
        return base_model_dir, "the base model (no champion yet)"
    registry = open_registry(config, _stores(state_dir, tracking_uri, dvc_remote), print)
    path = registry.download_version(champion, scratch_dir)
    return str(path), f"the champion {registry.model_name}/{champion}"
