"""Run the pipeline on this machine with ``kfp.local`` (SubprocessRunner, no venvs, caching on).

The same graph the cluster runs; each component executes as a subprocess in the current Python
environment. The pipeline root and the caches live in the state directory, so a re-run with nothing
changed is served from the cache. Each run writes its full log (``STATE_DIR/logs/run-<time>.log``)
and, once it ends, the per-step timings beside it (``run-<time>.timings.json``, :mod:`pipelines.timings`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from vlthinker.config import Config
from vlthinker.errors import VLThinkerError
from vlthinker.state import Stores

Log = Callable[[str], None]


class PipelineFailed(VLThinkerError):
    """A step of the local pipeline failed; the run stopped there."""


class QuietExecutorStream:
    """Passes kfp.local's output through, minus each executor's dump of its whole input JSON.

    Every line still goes to the run's full log file; only the console copy is filtered.
    """

    START = "Got executor_input:"

    def __init__(self, console, full_log):
        self.console, self.full_log = console, full_log
        self._buffer = ""
        self._skipping = False

    def write(self, text: str) -> int:
        self.full_log.write(text)
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._line(line + "\n")
        return len(text)

    def _line(self, line: str) -> None:
        if self._skipping:
            if line.rstrip() == "    }":
                self._skipping = False
            return
        if self.START in line:
            self._skipping = True
            return
        self.console.write(line)

    def flush(self) -> None:
        self.full_log.flush()
        self.console.flush()

    def isatty(self) -> bool:
        return False


def run_local(config: Config, stores: Stores, log: Log = print) -> float:
    """Execute the pipeline; return the wall time in seconds. A failing step raises with its error."""
    from kfp import local

    from pipelines.cluster import config_yaml
    from pipelines.graph import build_pipeline
    from pipelines.timings import write_timings

    stores.pipeline_root.mkdir(parents=True, exist_ok=True)
    # steps run as subprocesses: keep library deprecation chatter out of the run's output
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(stores.pipeline_root),
        enable_caching=True,
        raise_on_error=True,
    )
    pipeline = build_pipeline(config)
    started = time.monotonic()
    logs = stores.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = Path(logs / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log")
    log(
        f"pipeline: {config.pipeline.iterations} iteration(s); root {stores.pipeline_root}; full log {log_file}"
    )
    with log_file.open("w", encoding="utf-8") as full_log, warnings.catch_warnings():
        # our images are Python images whose names lack "python"; kfp.local warns about that for every task
        warnings.filterwarnings(
            "ignore", message="You may be attemping to run a task", category=RuntimeWarning
        )
        # display names, resources and secrets are cluster settings; kfp.local says so for every task
        warnings.filterwarnings(
            "ignore", message=".*have no effect in the current local runner", category=UserWarning
        )
        stream = QuietExecutorStream(sys.stdout, full_log)
        with contextlib.redirect_stdout(stream):
            try:
                pipeline(
                    config_yaml=config_yaml(config),
                    state_dir=str(stores.state_dir),
                    tracking_uri=stores.tracking_uri,
                    dvc_remote=stores.dvc_remote,
                    run_label=config.content_hash()[:12],
                )
            except (
                RuntimeError
            ) as exc:  # kfp.local: "Pipeline ... finished with status FAILURE. Inner task failed"
                message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
                raise PipelineFailed(
                    f"{message}\nThe step's own error is printed above; the full log is {log_file}. "
                    "Fix the cause and run again: the steps that finished come from the cache."
                ) from None
            finally:
                seconds = time.monotonic() - started
                stream.flush()
                timings = write_timings(log_file, seconds)
    log(
        f"pipeline: {timings['steps_run']} step(s) ran ({timings['steps_seconds']:.0f}s of their own compute), "
        f"the rest came from the cache; wall time {seconds:.0f}s"
    )
    return seconds
