"""``vlthinker lineage``: from a model version down to the data it came from, and back from the remote.

A reference is ``NAME@ALIAS`` (e.g. ``vlthinker@champion``), ``NAME/VERSION`` or just ``NAME``
(= ``NAME@champion``). The walk follows ``vlt.parent_version`` tags: model version -> the datasets
it saw (role, md5 ``.dir`` hash, object in the DVC remote, the roles it was derived from) -> parent
version -> ... -> the base model (its recorded evaluation and datasets). *Sources* are the datasets
that were derived from nothing recorded (e.g. the synthetic or imported source sets).

:func:`fetch` restores any dataset of the walk by hash from the DVC remote it was recorded in (or
from an explicit remote), verified byte for byte against the hash.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vlthinker.registry.client import CHAMPION, Registry, RegistryError

_REF_RE = re.compile(r"^(?P<name>[^@/]+)(?:@(?P<alias>[^@/]+)|/(?P<version>\d+))?$")


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``(name, alias, version)``; exactly one of alias and version is set."""
    match = _REF_RE.match(ref.strip())
    if not match:
        raise RegistryError(f"model reference {ref!r}: expected NAME@ALIAS, NAME/VERSION or NAME")
    version = match.group("version")
    alias = match.group("alias") or (None if version else CHAMPION)
    return match.group("name"), alias, int(version) if version else None


def _node(registry: Registry, version: int, aliases: dict[int, list[str]]) -> dict[str, Any]:
    mv = registry.require_version(version)
    tags = dict(mv.tags or {})
    remote = tags.get("vlt.dvc_remote")
    datasets = json.loads(tags.get("vlt.datasets", "[]"))
    for entry in datasets:
        entry.setdefault("remote", remote)
    parent = tags.get("vlt.parent_version")
    return {
        "version": version,
        "aliases": sorted(aliases.get(version, [])),
        "iteration": tags.get("vlt.iteration"),
        "stage": tags.get("vlt.stage"),
        "decision": tags.get("vlt.decision"),
        "git_commit": tags.get("vlt.git_commit"),
        "pipeline_run_id": tags.get("vlt.pipeline_run_id"),
        "config_hash": tags.get("vlt.config_hash"),
        "eval_run_id": tags.get("vlt.eval_run_id"),
        "source": mv.source,
        "metrics": json.loads(tags.get("vlt.metrics", "{}")),
        "datasets": datasets,
        "parent": None if parent in (None, "", "base") else int(parent),
    }


def walk(registry: Registry, ref: str) -> dict[str, Any]:
    """The lineage of ``ref`` as a JSON-ready dict: chain of versions, the base, the sources."""
    name, alias, version = parse_ref(ref)
    reg = registry if name == registry.model_name else registry.with_model(name)
    model = reg.get_model()
    if model is None:
        raise RegistryError(f"no registered model {name!r} in {reg.where}")
    if alias is not None:
        found = (model.aliases or {}).get(alias)
        if found is None:
            raise RegistryError(f"{name}@{alias}: the alias is not set")
        version = int(found)
    aliases: dict[int, list[str]] = {}
    for key, value in (model.aliases or {}).items():
        aliases.setdefault(int(value), []).append(key)
    chain: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: int | None = version
    while current is not None:
        if current in seen:
            raise RegistryError(f"{name}: parent versions form a cycle at version {current}")
        seen.add(current)
        node = _node(reg, current, aliases)
        chain.append(node)
        current = node["parent"]
    base = reg.base_record()
    if base is not None:
        for entry in base.get("datasets", []):
            entry.setdefault("remote", base.get("dvc_remote"))
    every = [d for node in chain for d in node["datasets"]] + (base.get("datasets", []) if base else [])
    sources: dict[str, dict[str, Any]] = {}
    for entry in every:
        if not entry.get("derived_from") and not entry["role"].startswith("eval:"):
            sources.setdefault(entry["md5"], entry)
    return {
        "model": name,
        "ref": ref,
        "version": version,
        "chain": chain,
        "base": base,
        "sources": list(sources.values()),
    }


def _dataset_lines(datasets: list[dict[str, Any]], indent: str) -> list[str]:
    lines = []
    for entry in datasets:
        origin = f"  (from {', '.join(entry['derived_from'])})" if entry.get("derived_from") else ""
        lines.append(f"{indent}{entry['role']:<16} {entry['md5']}  {entry.get('url', '')}{origin}")
    return lines


def format_lineage(tree: dict[str, Any]) -> str:
    """The walk as text: each version with its datasets, then its parent, down to the base and sources."""
    name = tree["model"]
    lines = []
    for depth, node in enumerate(tree["chain"]):
        pad = "  " * depth
        aliases = f"  @{', @'.join(node['aliases'])}" if node["aliases"] else ""
        lines.append(
            f"{pad}{name}/{node['version']}{aliases}  iteration {node['iteration']} ({node['stage']}), "
            f"decision {node['decision'] or '-'}"
        )
        lines.append(
            f"{pad}  git {node['git_commit']}  pipeline run {node['pipeline_run_id']}  config {node['config_hash']}"
        )
        lines.append(f"{pad}  model {node['source']}  evaluation run {node['eval_run_id']}")
        lines.append(f"{pad}  datasets:")
        lines += _dataset_lines(node["datasets"], f"{pad}    ")
        parent = node["parent"]
        lines.append(f"{pad}  parent: {f'{name}/{parent}' if parent is not None else 'the base model'}")
    base = tree["base"]
    pad = "  " * len(tree["chain"])
    if base is None:
        lines.append(f"{pad}base: not recorded")
    else:
        accuracy = base.get("metrics", {}).get("heldout_accuracy")
        score = f", held-out accuracy {100 * accuracy:.1f}%" if accuracy is not None else ""
        lines.append(f"{pad}base {base.get('model')}{score} (evaluation run {base.get('run_id')})")
        if base.get("datasets"):
            lines.append(f"{pad}  datasets:")
            lines += _dataset_lines(base["datasets"], f"{pad}    ")
    lines.append("sources:")
    lines += _dataset_lines(tree["sources"], "  ") or ["  (none recorded)"]
    return "\n".join(lines)


def find_dataset(tree: dict[str, Any], md5: str) -> dict[str, Any]:
    """The lineage entry of a dataset hash (any version of the walk, or the base)."""
    from vlthinker.datasets_dvc import check_md5

    value = check_md5(md5)
    entries = [d for node in tree["chain"] for d in node["datasets"]]
    if tree.get("base"):
        entries += tree["base"].get("datasets", [])
    for entry in entries:
        if entry["md5"] == value:
            return entry
    raise RegistryError(f"dataset {value} is not in the lineage of {tree['ref']}")


def fetch(tree: dict[str, Any], md5: str, output_dir: str | Path, dvc_remote: str | None = None) -> Path:
    """Restore a dataset of the lineage from its DVC remote (or ``dvc_remote``) into ``output_dir``."""
    from vlthinker.datasets_dvc import fetch_dataset

    entry = find_dataset(tree, md5)
    remote = dvc_remote or entry.get("remote")
    if not remote:
        raise RegistryError(f"dataset {entry['md5']}: no DVC remote recorded; pass --dvc-remote")
    return fetch_dataset(entry["md5"], output_dir, remote)
