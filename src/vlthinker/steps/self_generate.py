"""Self-generation step (iteration >= 2): a VLM answers training questions from the image itself.

As in the paper, the model is the previous iteration's RL model (or the registry champion, per
config); k samples per item, the same filters as distillation, only verified traces are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlthinker.config import Config
from vlthinker.steps.sft_data import Log, make_sft_dataset


def self_generate(
    config: Config, model_dir: str | Path, input_dir: str | Path, output_dir: str | Path, log: Log = print
) -> dict[str, Any]:
    from vlthinker.backends.base import BackendConfig, make_backend
    from vlthinker.steps.chain_sources import VLMSource

    cfg = config.self_generate
    backend = make_backend(
        BackendConfig(
            kind=cfg.backend_kind,
            model=str(model_dir),
            batch_size=cfg.batch_size,
            trust_remote_code=config.model.trust_remote_code,
        )
    )
    with backend:
        source = VLMSource(backend, cfg.sampling.params(), name=f"self:{Path(str(model_dir)).name}")
        return make_sft_dataset(input_dir, output_dir, source, cfg.k, cfg.filters, cfg.batch_size, log)
