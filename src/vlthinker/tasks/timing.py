"""Each component times its own work and prints it as one marked line of its log.

A component body runs ``with timed("caption"): ...`` around its call into the library; on the way out
it prints::

    vlthinker-step-time: {"ok": true, "seconds": 1.234, "step": "caption"}

The seconds are the step's own compute: the body, including the library imports it does, but not the
process start, the KFP executor or the orchestrator around it. ``vlthinker run`` collects these lines
from the run's output (:mod:`pipelines.timings`) into a timings file beside the run's log, which is
what ``bench/bench_pipeline.py`` reads to compute the orchestration overhead. A step served from
kfp.local's cache does not run, so it prints nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

MARK = "vlthinker-step-time:"


def timing_line(step: str, seconds: float, ok: bool) -> str:
    payload = {"step": step, "seconds": round(seconds, 6), "ok": ok}
    return f"{MARK} {json.dumps(payload, sort_keys=True)}"


@contextmanager
def timed(step: str) -> Iterator[None]:
    """Print the wall time of the block as a marked line (also when the block raises)."""
    started = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        print(timing_line(step, time.perf_counter() - started, ok), flush=True)
