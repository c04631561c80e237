"""Data tasks: sources, captions, distillation, self-generation, validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from vlthinker.config import Config, config_from_dict
from vlthinker.errors import VLThinkerError
from vlthinker.records import read_records


class ValidationFailed(VLThinkerError):
    """A dataset failed its critical expectations; the run stops here."""


def parse_config(config_yaml: str) -> Config:
    """The pipeline passes the whole config as one YAML string parameter."""
    return config_from_dict(yaml.safe_load(config_yaml) or {}, source="<pipeline config>")


def dataset_summary(dataset_dir: str | Path) -> dict[str, Any]:
    from collections import Counter

    records = read_records(dataset_dir)
    return {
        "records": len(records),
        "by_task": dict(sorted(Counter(r.task for r in records).items())),
        "by_source": dict(sorted(Counter(r.source for r in records).items())),
    }


def make_sources(config: Config, train_dir: str, heldout_dir: str) -> dict[str, Any]:
    """The synthetic train and held-out sets of this config (disjoint by construction and checked)."""
    from vlthinker.sources.generate import check_disjoint, generate_dataset

    data = config.data
    for split, n, out in (("train", data.n_train, train_dir), ("heldout", data.n_heldout, heldout_dir)):
        generate_dataset(
            out,
            n=n,
            seed=data.seed,
            split=split,
            tasks=data.tasks,
            image_size=data.image_size,
            max_difficulty=data.max_difficulty,
        )
    check_disjoint(train_dir, heldout_dir)
    return {"train": dataset_summary(train_dir), "heldout": dataset_summary(heldout_dir)}


def validate(
    config: Config, dataset_dir: str, kind: str, against: list[str], report_html: str | None = None
) -> dict[str, Any]:
    """Validate; write the HTML report where asked; raise ValidationFailed on a critical failure."""
    from vlthinker.validation import validate_dataset

    # an evaluation set is not contaminated by itself
    against = [a for a in against if Path(a).resolve() != Path(dataset_dir).resolve()]
    result = validate_dataset(dataset_dir, kind, against=against, config=config.validation)
    json_path, html_path = result.write()
    if report_html:
        Path(report_html).parent.mkdir(parents=True, exist_ok=True)
        Path(report_html).write_text(Path(html_path).read_text(encoding="utf-8"), encoding="utf-8")
    summary = {
        "kind": kind,
        "success": result.success,
        "failed": sorted(result.failed_rules()),
        "report": str(json_path),
    }
    if not result.success:
        raise ValidationFailed(f"{dataset_dir} failed validation as {kind!r}:\n{result.summary()}")
    return summary


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def publish(dataset_dir: str, dvc_remote: str, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Push a dataset to the DVC remote; metadata for its artifact (hash, where to fetch, counts)."""
    from vlthinker.datasets_dvc import object_url, push_dataset

    md5 = push_dataset(dataset_dir, dvc_remote)
    metadata: dict[str, Any] = {
        "dvc_md5": md5,
        "dvc_remote": dvc_remote,
        "dvc_url": object_url(dvc_remote, md5),
    }
    if summary is not None:
        metadata["summary"] = json.loads(json.dumps(summary, default=str))
    return metadata


def captioner_name(config: Config, base_model_dir: str) -> str:
    """A stable name of the captioning model, recorded in the captioned dataset and its cache key.

    Not the base model's artifact path: that differs per pipeline run and state directory, which would
    give identical captions a new content hash on every run (and after every restart).
    """
    backend = config.caption.backend
    if backend is not None:
        return f"{backend.kind}:{backend.model}"
    name = f"hf:{config.model.base}"
    report = Path(base_model_dir) / "base_report.json"  # the tiny base: its weights' hash
    if report.is_file():
        sha = json.loads(report.read_text(encoding="utf-8")).get("model_sha256")
        if sha:
            name += f"@sha256:{sha[:16]}"
    return name


def caption(config: Config, source_dir: str, base_model_dir: str, output_dir: str) -> dict[str, Any]:
    from vlthinker.backends.base import BackendConfig, make_backend
    from vlthinker.steps.caption import caption_dataset

    cfg = config.caption
    backend_cfg = cfg.backend or BackendConfig(kind="hf", model=base_model_dir, batch_size=cfg.batch_size)
    needs_model = any(not (r.caption_exact and r.caption) for r in read_records(source_dir))
    backend = make_backend(backend_cfg) if needs_model else None
    try:
        return caption_dataset(
            source_dir,
            output_dir,
            backend,
            captioner_name(config, base_model_dir),
            cfg.prompt,
            cfg.sampling.params(),
            cfg.batch_size,
            log=print,
        )
    finally:
        if backend is not None:
            backend.close()


def distill(config: Config, captioned_dir: str, output_dir: str) -> dict[str, Any]:
    from vlthinker.steps.distill import distill as run

    return run(config, captioned_dir, output_dir, log=print)


def self_generate(config: Config, model_dir: str, captioned_dir: str, output_dir: str) -> dict[str, Any]:
    from vlthinker.steps.self_generate import self_generate as run

    return run(config, model_dir, captioned_dir, output_dir, log=print)
