"""Run the pipeline on this machine with ``kfp.local`` (SubprocessRunner, no venvs, caching on).

The same graph the cluster runs; each component executes as a subprocess in the current Python
environment. The pipeline root and the caches live in the state directory, so a re-run with nothing
changed is served from the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vlthinker.config import Config
from vlthinker.state import Stores

Log = Callable[[str], None]


def run_local(config: Config, stores: Stores, log: Log = print) -> float:
    """Execute the pipeline; return the wall time in seconds. A failing step raises with its error."""
    from kfp import local

    from pipelines.cluster import config_yaml
    from pipelines.graph import build_pipeline

    stores.pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(stores.pipeline_root),
        enable_caching=True,
        raise_on_error=True,
    )
    pipeline = build_pipeline(config)
    started = time.monotonic()
    log(f"pipeline: {config.pipeline.iterations} iteration(s); pipeline root {stores.pipeline_root}")
    pipeline(
        config_yaml=config_yaml(config),
        state_dir=str(stores.state_dir),
        tracking_uri=stores.tracking_uri,
        dvc_remote=stores.dvc_remote,
        run_label=config.content_hash()[:12],
    )
    return time.monotonic() - started
