"""A new embedded MLflow store used by several processes at once: every one of them gets a working store."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import sys
from vlthinker.state import initialize_embedded_store
from mlflow import MlflowClient
uri = f"sqlite:///{sys.argv[1]}/mlflow.db"
initialize_embedded_store(uri)
MlflowClient(tracking_uri=uri, registry_uri=uri).create_experiment(f"exp-{sys.argv[2]}")
print("ok")
"""


def test_concurrent_first_use_of_a_new_sqlite_store(tmp_path):
    # Without the lock, MLflow's table creation races: all but one process fail with
    # "table experiments already exists" (3 of 3 rounds failed when measured).
    state = tmp_path / "state"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(state), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for i in range(3)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
