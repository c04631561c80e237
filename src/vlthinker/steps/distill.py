"""Distillation step (iteration 1): a text-only teacher reads caption + question; verified traces kept.

Teacher failures (requests that fail after their retries, malformed answers) and garbage (no chain
with a final answer) are counted in ``stats.json`` ``failures``; more than ``distill.max_failed_share``
of the items stops the step with a clear error instead of writing a tiny dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlthinker.config import Config
from vlthinker.steps.sft_data import Log, make_sft_dataset


def teacher_source(config: Config):
    from vlthinker.steps.chain_sources import OfflineTeacherSource, TextTeacherSource

    distill = config.distill
    if distill.teacher == "offline":
        return OfflineTeacherSource(distill.offline)
    from vlthinker.backends.base import make_backend

    backend = make_backend(distill.backend)
    return TextTeacherSource(
        backend, distill.sampling.params(), name=f"{distill.backend.kind}:{distill.backend.model}"
    )


def distill(
    config: Config, input_dir: str | Path, output_dir: str | Path, log: Log = print
) -> dict[str, Any]:
    source = teacher_source(config)
    try:
        return make_sft_dataset(
            input_dir,
            output_dir,
            source,
            config.distill.k,
            config.distill.filters,
            config.distill.batch_size,
            log,
            max_failed_share=config.distill.max_failed_share,
            bound_key="distill.max_failed_share",
        )
    finally:
        backend = getattr(source, "backend", None)
        if backend is not None:
            backend.close()
