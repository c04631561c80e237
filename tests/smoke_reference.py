"""One uninterrupted smoke run per pytest session, shared by every test module and xdist worker.

The run costs ~3 minutes on two cores; ``test_pipeline_local`` checks it and ``test_pipeline_kill``
compares a killed-and-restarted run with it. Under pytest-xdist a module- or session-scoped fixture
runs once per worker, so the run is guarded by a file lock in the session's shared temporary
directory instead: the first test to ask runs it, the others wait for it and read its result.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "recipes" / "smoke.yaml"


def vlthinker(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "vlthinker.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )


def session_dir(tmp_path_factory) -> Path:
    """This pytest session's temporary root, the same for all its xdist workers (not across sessions)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def reference_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, float]:
    """(state dir, the run's result, its wall seconds) of the session's uninterrupted smoke run."""
    root = session_dir(tmp_path_factory) / "smoke-reference"
    root.mkdir(exist_ok=True)
    state, record = root / "state", root / "result.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            started = time.monotonic()
            result = vlthinker("run", "--config", str(SMOKE), "--state-dir", str(state))
            payload = {
                "args": result.args,
                "returncode": result.returncode,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "seconds": time.monotonic() - started,
            }
            tmp = record.with_suffix(".tmp")
            tmp.write_text(json.dumps(payload), encoding="utf-8")
            os.replace(tmp, record)
    payload = json.loads(record.read_text(encoding="utf-8"))
    result = subprocess.CompletedProcess(
        payload["args"], payload["returncode"], payload["stdout"], payload["stderr"]
    )
    return state, result, payload["seconds"]
