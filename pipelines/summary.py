"""The end-of-run summary of ``vlthinker run``: one table from the registry, and how to open MLflow."""

from __future__ import annotations

from collections.abc import Callable

from vlthinker.config import Config
from vlthinker.state import Stores


def _pct(value) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _of_run(status: dict, run_label: str, stage: str) -> list[dict]:
    return [
        version
        for version in status["versions"]
        if version["tags"].get("vlt.pipeline_run_id") == run_label and (version["stage"] or "rl") == stage
    ]


def sft_versions(status: dict, run_label: str) -> list[tuple[int, int]]:
    """(iteration, version) of this run's registered SFT models (``registry.register_sft``), in order."""
    return sorted(
        (version["iteration"] or 0, version["version"]) for version in _of_run(status, run_label, "sft")
    )


def summary_rows(status: dict, run_label: str) -> list[dict]:
    """This run's candidates (the gated RL models), by iteration, from the registry status."""
    rows = []
    for version in _of_run(status, run_label, "rl"):
        tags = version["tags"]
        rows.append(
            {
                "iteration": version["iteration"],
                "version": version["version"],
                "sft_items": tags.get("vlt.sft_data_records", "-"),
                "rl_items": tags.get("vlt.rl_data_records", "-"),
                "accuracy": version["metrics"].get("heldout_accuracy"),
                "sft_accuracy": tags.get("vlt.sft_control_heldout_accuracy"),
                "decision": version["decision"] or "-",
                "reason": (version["reasons"] or ["-"])[-1],
                "aliases": ",".join(version["aliases"]) or "-",
            }
        )
    return sorted(rows, key=lambda row: (row["iteration"] or 0, row["version"]))


def format_summary(status: dict, run_label: str, seconds: float, tracking_uri: str) -> str:
    base = (status.get("base") or {}).get("metrics", {})
    reasoning = (status.get("base") or {}).get("reasoning_control") or {}
    lines = [
        f"run {run_label} finished in {seconds:.0f}s; registered model {status['model']!r}",
        f"base model: held-out accuracy {_pct(base.get('heldout_accuracy'))} answering directly "
        "(the gate's reference)"
        + (
            f"; {_pct(reasoning.get('heldout_accuracy'))} asked to reason step by step (a control)"
            if reasoning
            else ""
        ),
        f"{'iter':>4}  {'version':>7}  {'SFT items':>9}  {'RL items':>8}  {'SFT only':>8}  {'held-out':>8}  "
        f"{'decision':<9} aliases: reason",
    ]
    for row in summary_rows(status, run_label):
        lines.append(
            f"{row['iteration']:>4}  {row['version']:>7}  {row['sft_items']:>9}  {row['rl_items']:>8}  "
            f"{_pct(row['sft_accuracy']):>8}  {_pct(row['accuracy']):>8}  {row['decision']:<9} "
            f"{row['aliases']}: {row['reason']}"
        )
    lines.append(
        "(held-out: the candidate after GRPO, which the gate compares; SFT only: the iteration's SFT "
        "model on the same items, a control the gate does not use)"
    )
    registered_sft = sft_versions(status, run_label)
    if registered_sft:
        lines.append(
            "SFT models registered, not gated (registry.register_sft): "
            + ", ".join(f"{status['model']}/{version} (iteration {it})" for it, version in registered_sft)
        )
    champion = status.get("champion")
    lines.append(
        f"champion: {status['model']}/{champion}"
        if champion
        else "champion: none (the base stays the reference)"
    )
    lines.append(f"open the MLflow UI:  mlflow ui --backend-store-uri {tracking_uri}")
    return "\n".join(lines)


def print_summary(
    config: Config, stores: Stores, seconds: float, echo: Callable[[str], None] = print
) -> dict:
    from vlthinker.registry.client import open_registry
    from vlthinker.registry.status import registry_status

    status = registry_status(open_registry(config, stores))
    echo(format_summary(status, config.content_hash()[:12], seconds, stores.tracking_uri))
    return status
