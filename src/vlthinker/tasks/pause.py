"""Test-only pause points, so that a kill test can SIGKILL a step at an exact place. Inert by default.

``VLTHINKER_FAULT_PAUSE`` names the points to pause at (comma-separated); unset or empty, nothing
happens. When a task reaches a named point it prints one line::

    vlthinker-fault-pause: reached gate:locked@1 (pid 12345)

flushes it, and sleeps for ``VLTHINKER_FAULT_PAUSE_S`` seconds (default 300), then carries on as if
nothing happened. The kill test waits for that line in the run's output and kills the process group.

A point may carry the pipeline iteration it applies to: ``gate:journaled@2`` pauses only the gate of
iteration 2, ``gate:journaled`` the gate of every iteration (kfp.local does not promise an order of
independent tasks, so a kill test names the iteration). Points (see :mod:`vlthinker.tasks.registry`):

* ``gate:<phase>`` — a phase of :func:`vlthinker.registry.gate.gate_version`: ``locked`` (lock
  held, nothing decided), ``decided``, ``journaled`` (decision journaled, not applied), ``applied``,
  and ``registered`` (the candidate's version exists, before the gate takes the lock);
* ``registry:<call>`` — right after a registry call of that label made while registering, e.g.
  ``registry:create logged model`` (a logged model with no files yet, no version) or
  ``registry:upload model``.
"""

from __future__ import annotations

import os
import time
from typing import Any

ENV = "VLTHINKER_FAULT_PAUSE"
SECONDS_ENV = "VLTHINKER_FAULT_PAUSE_S"
MARK = "vlthinker-fault-pause: reached"


def armed_points() -> frozenset[str]:
    """The pause points named in the environment (empty: the hook is off)."""
    raw = os.environ.get(ENV, "")
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


def pause_point(name: str, iteration: int | None = None) -> None:
    """Pause here if ``name`` (or ``name@iteration``) is armed; otherwise return at once."""
    armed = armed_points()
    if not armed:
        return
    scoped = f"{name}@{iteration}" if iteration is not None else name
    if name not in armed and scoped not in armed:
        return
    print(f"{MARK} {scoped} (pid {os.getpid()})", flush=True)
    time.sleep(float(os.environ.get(SECONDS_ENV, "300")))


def pause_after_registry_calls(registry: Any, iteration: int | None = None) -> None:
    """Arm ``registry:<label>`` points on this registry object's calls (no-op when none is armed)."""
    if not any(p.startswith("registry:") for p in armed_points()):
        return
    original = registry.call

    def call(what: str, fn, *args, **kwargs):
        result = original(what, fn, *args, **kwargs)
        pause_point(f"registry:{what}", iteration)
        return result

    registry.call = call
