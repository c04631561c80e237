"""Model tasks: base model, SFT, RL data selection, GRPO, evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlthinker.config import Config
from vlthinker.model.refs import resolve_model_ref, write_model_ref


def record_metrics(artifact, values: dict[str, float]) -> None:
    """Log metrics on a KFP Metrics artifact and write them to its path as JSON.

    ``log_metric`` writes metadata only, and kfp.local's cache treats an output whose file is
    missing as a miss, so the file is what lets those steps be served from the cache.
    """
    for key, value in values.items():
        artifact.log_metric(key, value)
    Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    Path(artifact.path).write_text(json.dumps(dict(artifact.metadata), sort_keys=True), encoding="utf-8")


def base_model(config: Config, state_dir: str, output_dir: str) -> dict[str, Any]:
    """The tiny model pretrained (content-cached under STATE_DIR/cache), or a pointer to a hub/local model."""
    if config.model.base != "tiny":
        write_model_ref(output_dir, config.model.base)
        return {"ref": config.model.base, "kind": "external"}
    from vlthinker.model.pretrain import pretrain_base

    report, cached = pretrain_base(config, output_dir, cache_dir=Path(state_dir) / "cache", log=print)
    return {
        "ref": "tiny",
        "kind": "tiny-pretrained",
        "cache_key": report.cache_key,
        "cached": cached,
        "direct_answer_accuracy": report.heldout_accuracy,
        "caption_loss": report.caption_loss,
    }


def _report_metadata(report) -> dict[str, Any]:
    payload = report.to_json()
    payload.pop("extra", None)
    numeric = {
        k: float(v) for k, v in payload.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return {"report": json.loads(json.dumps(payload, default=str)), "metrics": numeric}


def sft(
    config: Config,
    sft_data: str,
    base_dir: str,
    output_dir: str,
    tracking_uri: str,
    run_label: str,
    iteration: int,
) -> dict[str, Any]:
    from vlthinker.training.sft import init_model, train_sft

    start = init_model(config, resolve_model_ref(base_dir), None)
    report = train_sft(config, sft_data, start, output_dir, tracking_uri=tracking_uri, log=print)
    return {"iteration": iteration, "run_label": run_label, "stage": "sft", **_report_metadata(report)}


def select(
    config: Config, source_dir: str, model_dir: str, output_dir: str, iteration: int
) -> dict[str, Any]:
    from vlthinker.training.select import select_rl_data

    stats = select_rl_data(config, resolve_model_ref(model_dir), source_dir, output_dir, log=print)
    return {"iteration": iteration, **stats}


def rl(
    config: Config,
    rl_data: str,
    sft_dir: str,
    output_dir: str,
    tracking_uri: str,
    run_label: str,
    iteration: int,
) -> dict[str, Any]:
    from vlthinker.training.rl import train_rl

    report = train_rl(
        config, rl_data, resolve_model_ref(sft_dir), output_dir, tracking_uri=tracking_uri, log=print
    )
    return {"iteration": iteration, "run_label": run_label, "stage": "rl", **_report_metadata(report)}


def evaluate(config: Config, model_dir: str, heldout_dir: str, output_dir: str, stage: str) -> dict[str, Any]:
    """Greedy evaluation on the held-out set: stage ``base`` answers directly (the gate's reference);
    every other stage reasons, ``base-reasoning`` (the base's step-by-step control) included."""
    from vlthinker.steps.evaluate import evaluate_step, kfp_outputs

    style = "direct" if stage == "base" else "reasoning"
    evaluate_step(
        config, resolve_model_ref(model_dir), {"heldout": heldout_dir}, output_dir, prompt_style=style
    )
    flat, markdown, _html = kfp_outputs(output_dir)
    return {"metadata": {"stage": stage, "prompt_style": style}, "metrics": flat, "markdown": markdown}
