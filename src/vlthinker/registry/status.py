"""``vlthinker registry status``: the registered model, its champion, the base and every version.

The JSON form (``--json``)::

    {"model": str, "champion": int | null,
     "base": {"metrics": {...}, "model": str, "run_id": str} | null,
     "versions": [{"version": int, "aliases": [str], "iteration": int | null, "stage": str | null,
                   "decision": "promote" | "reject" | "rolled-back" | null, "reasons": [str],
                   "metrics": {"heldout_accuracy": float, ...}, "tags": {str: str}}]}
"""

from __future__ import annotations

import json
from typing import Any

from vlthinker.registry.client import CHAMPION, Registry


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def version_entry(mv: Any, aliases: list[str]) -> dict[str, Any]:
    tags = dict(mv.tags or {})
    gate = json.loads(tags["vlt.gate"]) if tags.get("vlt.gate") else {}
    metrics = json.loads(tags["vlt.metrics"]) if tags.get("vlt.metrics") else {}
    return {
        "version": int(mv.version),
        "aliases": sorted(aliases),
        "iteration": _int_or_none(tags.get("vlt.iteration")),
        "stage": tags.get("vlt.stage"),
        "decision": tags.get("vlt.decision"),
        "reasons": list(gate.get("reasons", [])),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "tags": tags,
    }


def registry_status(registry: Registry) -> dict[str, Any]:
    """The status as a JSON-ready dict (see the module docstring)."""
    model = registry.get_model()
    if model is None:
        return {"model": registry.model_name, "champion": None, "base": None, "versions": []}
    by_version: dict[int, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        by_version.setdefault(int(version), []).append(alias)
    champion = (model.aliases or {}).get(CHAMPION)
    base = registry.base_record()
    return {
        "model": registry.model_name,
        "champion": None if champion is None else int(champion),
        "base": None
        if base is None
        else {
            "metrics": base.get("metrics", {}),
            "reasoning_control": base.get("reasoning_control"),
            "model": base.get("model"),
            "run_id": base.get("run_id"),
        },
        "versions": [version_entry(mv, by_version.get(int(mv.version), [])) for mv in registry.versions()],
    }


def _pct(metrics: dict[str, float], key: str) -> str:
    return f"{100 * metrics[key]:.1f}%" if key in metrics else "-"


def format_status(status: dict[str, Any], pending: dict[str, Any] | None = None) -> str:
    """A short table for people."""
    name = status["model"]
    champion = status["champion"]
    lines = [f"model {name}: champion {f'{name}/{champion}' if champion is not None else 'none'}"]
    base = status["base"]
    if base is None:
        lines.append("base: not recorded")
    else:
        lines.append(
            f"base {base.get('model')}: held-out accuracy {_pct(base['metrics'], 'heldout_accuracy')}, "
            f"format rate {_pct(base['metrics'], 'heldout_format_rate')}"
            + (
                f"; step by step {_pct(base['reasoning_control'], 'heldout_accuracy')} (control)"
                if base.get("reasoning_control")
                else ""
            )
        )
    if pending:
        intent = pending.get("intent") or {}
        lines.append(
            f"lock epoch {pending['epoch']} held by {pending['owner']}"
            + (
                f" with a journaled {intent.get('op')} not yet finished"
                if intent and not pending["applied"]
                else ""
            )
        )
    if not status["versions"]:
        lines.append("no versions")
        return "\n".join(lines)
    lines.append(
        f"{'version':>7}  {'iter':>4}  {'stage':<5}  {'decision':<11}  {'held-out':>8}  {'format':>6}  aliases"
    )
    for v in status["versions"]:
        lines.append(
            f"{v['version']:>7}  {v['iteration'] if v['iteration'] is not None else '-':>4}  {v['stage'] or '-':<5}  "
            f"{v['decision'] or '-':<11}  {_pct(v['metrics'], 'heldout_accuracy'):>8}  "
            f"{_pct(v['metrics'], 'heldout_format_rate'):>6}  {', '.join(v['aliases'])}"
        )
    return "\n".join(lines)
