"""RL data selection: estimate each candidate's pass rate under the SFT model, keep a band of them.

At most ``max_candidates`` items (a seeded random sample, kept in input order) are measured: GRPO
only uses ``rl.max_steps x rl.prompts_per_step`` prompts. Each item is asked k times
(``select.sampling``, reasoning prompt) through a generation backend and every answer is graded as
the RL accuracy reward grades it (strict format, then ``grade``); the pass rate is the mean. Items
with ``min_pass_rate < p < max_pass_rate`` are kept (default 0 < p < 1). ``curriculum:
medium_then_hard`` writes medium items (p >= ``hard_below``) before hard ones, each group shuffled,
and marks ``curriculum_stage``; the RL step then reads them in order.

Sampling is journaled per batch beside the output, so an interrupted run resumes where it stopped.
Output: the RL dataset (source fields + ``prompt`` + ``pass_rate`` + ``pass_k``) and ``stats.json``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlthinker.config import Config, SelectConfig
from vlthinker.records import DatasetWriter, Record, read_records
from vlthinker.steps.journal import Journal, journal_path
from vlthinker.training.common import Log
from vlthinker.training.rl import rl_prompt

HISTOGRAM_BINS = 10


def pass_rates(
    backend,
    records: Sequence[Record],
    dataset_dir: Path,
    k: int,
    sampling: Any,
    batch_size: int,
    journal: Journal | None = None,
    log: Log = print,
) -> dict[str, float]:
    """Pass rate of every record under ``backend`` (k samples each, graded like the RL reward)."""
    from vlthinker.answers import accuracy_reward
    from vlthinker.steps.chain_sources import load_image

    params = sampling.params(n=k)
    todo = [r for r in records if journal is None or r.id not in journal]
    rates = {r.id: journal.entries[r.id]["pass_rate"] for r in records if journal and r.id in journal}
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        images = [load_image(dataset_dir, r) for r in batch]
        completions = backend.generate([rl_prompt(r) for r in batch], images, params)
        entries = []
        for record, samples in zip(batch, completions, strict=True):
            rewards = accuracy_reward(
                samples, [record.answer] * len(samples), choices=[record.choices] * len(samples)
            )
            rate = sum(rewards) / len(rewards)
            rates[record.id] = rate
            entries.append({"id": record.id, "pass_rate": rate, "k": len(rewards)})
        if journal is not None:
            journal.append_many(entries)
        log(f"select: sampled {len(records) - len(todo) + start + len(batch)}/{len(records)} items")
    return rates


def candidates(records: Sequence[Record], cfg: SelectConfig) -> list[Record]:
    """The items whose pass rates are measured: all, or a seeded sample of ``max_candidates`` in input order."""
    if cfg.max_candidates is None or len(records) <= cfg.max_candidates:
        return list(records)
    picked = set(
        random.Random(f"select-candidates:{cfg.seed}").sample(range(len(records)), cfg.max_candidates)
    )
    return [record for index, record in enumerate(records) if index in picked]


def choose(records: Sequence[Record], rates: dict[str, float], cfg: SelectConfig) -> list[tuple[Record, str]]:
    """The kept records in training order, each with its curriculum stage ('' without a curriculum)."""
    rng = random.Random(f"select:{cfg.seed}")
    kept = [r for r in records if cfg.min_pass_rate < rates[r.id] < cfg.max_pass_rate]
    rng.shuffle(kept)
    if cfg.max_items is not None:
        kept = kept[: cfg.max_items]
    if cfg.curriculum == "none":
        return [(r, "") for r in kept]
    medium = [(r, "medium") for r in kept if rates[r.id] >= cfg.hard_below]
    hard = [(r, "hard") for r in kept if rates[r.id] < cfg.hard_below]
    return medium + hard


def rl_record(record: Record, rate: float, k: int, stage: str) -> Record:
    payload = record.model_dump(mode="json", exclude_none=True)
    for sft_only in (
        "completion",
        "reasoning",
        "response",
        "trace_words",
        "reflection_truncated",
        "trace_origin",
    ):
        payload.pop(sft_only, None)
    payload.update(prompt=rl_prompt(record), pass_rate=round(rate, 6), pass_k=k)
    if stage:
        payload["curriculum_stage"] = stage
    return Record.model_validate(payload)


def summarize(
    records: Sequence[Record],
    rates: dict[str, float],
    chosen: list[tuple[Record, str]],
    cfg: SelectConfig,
    inputs: int,
) -> dict[str, Any]:
    histogram = Counter(min(int(rates[r.id] * HISTOGRAM_BINS), HISTOGRAM_BINS - 1) for r in records)
    by_task: dict[str, list[float]] = defaultdict(list)
    for record in records:
        by_task[record.task].append(rates[record.id])
    values = [rates[r.id] for r in records]
    return {
        "k": cfg.k,
        "band": [cfg.min_pass_rate, cfg.max_pass_rate],
        "curriculum": cfg.curriculum,
        "items": {
            "inputs": inputs,
            "candidates": len(records),
            "kept": len(chosen),
            "all_wrong": sum(v == 0 for v in values),
            "all_right": sum(v == 1 for v in values),
            "by_stage": dict(Counter(stage or "all" for _, stage in chosen)),
            "kept_by_task": dict(sorted(Counter(r.task for r, _ in chosen).items())),
        },
        "mean_pass_rate": round(sum(values) / max(len(values), 1), 4),
        "mean_pass_rate_by_task": {t: round(sum(v) / len(v), 4) for t, v in sorted(by_task.items())},
        "pass_rate_histogram": {
            f"{b / HISTOGRAM_BINS:.1f}-{(b + 1) / HISTOGRAM_BINS:.1f}": histogram.get(b, 0)
            for b in range(HISTOGRAM_BINS)
        },
    }


def _fingerprint(input_dir: Path, model: str, config: Config) -> str:
    digest = hashlib.sha256((input_dir / "records.jsonl").read_bytes())
    settings = {"model": model, "k": config.select.k, "sampling": config.select.sampling.model_dump()}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def select_rl_data(
    config: Config, model: str | Path, input_dir: str | Path, output_dir: str | Path, log: Log = print
) -> dict[str, Any]:
    """Estimate pass rates under ``model``, keep the configured band, write the RL dataset + stats."""
    import torch

    from vlthinker.backends.base import BackendConfig, make_backend

    cfg = config.select
    input_path, output_path = Path(input_dir), Path(output_dir)
    inputs = read_records(input_path)
    records = candidates(inputs, cfg)
    capped = len(records) < len(inputs)
    if capped:
        log(f"select: measuring pass rates on {len(records)} of {len(inputs)} items (select.max_candidates)")
    journal = Journal(journal_path(output_path, "pass-rates"), _fingerprint(input_path, str(model), config))
    torch.manual_seed(cfg.seed)
    backend_config = BackendConfig(
        kind=cfg.backend_kind,
        model=str(model),
        batch_size=cfg.batch_size,
        trust_remote_code=config.model.trust_remote_code,
        min_pixels=config.model.min_pixels,
        max_pixels=config.model.max_pixels,
    )
    todo = [r for r in records if r.id not in journal]
    if todo:
        with make_backend(backend_config) as backend:
            rates = pass_rates(
                backend, records, input_path, cfg.k, cfg.sampling, cfg.batch_size, journal, log
            )
    else:
        rates = {r.id: journal.entries[r.id]["pass_rate"] for r in records}
    chosen = choose(records, rates, cfg)
    stats = summarize(records, rates, chosen, cfg, len(inputs))
    with DatasetWriter(output_path) as writer:
        for record, stage in chosen:
            writer.add_image(record.image, (input_path / record.image).read_bytes())
            writer.add(rl_record(record, rates[record.id], cfg.k, stage))
        writer.write_stats(stats)
    journal.remove()
    log(
        f"select: kept {len(chosen)}/{len(records)} items with {cfg.min_pass_rate} < pass rate < "
        f"{cfg.max_pass_rate} (mean pass rate {stats['mean_pass_rate']:.3f})"
    )
    note = revisit_note(len(chosen), capped, config)
    if note:
        log(note)
    return stats


def revisit_note(kept: int, capped: bool, config: Config) -> str | None:
    """What to tell the user when a capped selection keeps fewer items than GRPO will draw prompts."""
    if config.rl.max_steps is None:
        return None
    needed = config.rl.max_steps * config.rl.prompts_per_step
    if not capped or not 0 < kept < needed:
        return None
    return (
        f"select: GRPO will use {needed} prompts (rl.max_steps x rl.prompts_per_step) and sees some of "
        f"the {kept} kept items more than once; raise select.max_candidates to keep more"
    )
