"""`dvc repro` runs the iteration-1 data stages through the step entry points and skips unchanged ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def dvc(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_dvc_repro_then_nothing_to_do(tmp_path):
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(n_train=12, n_heldout=6)
    # batch_size 5: one row of each of the five kinds of pretraining example (params.yaml default mix)
    params["pretrain"].update(steps=3, batch_size=5, n_train=12, n_heldout=6, log_every=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    dvc(tmp_path, "init", "--no-scm", "-q")
    first = dvc(tmp_path, "repro")
    for stage in ("sources", "base", "caption", "validate_captions", "distill", "validate_traces"):
        assert f"Running stage '{stage}'" in first.stdout, first.stdout
    assert (tmp_path / "data" / "sft" / "records.jsonl").is_file()
    assert (tmp_path / "dvc.lock").is_file()
    second = dvc(tmp_path, "repro")
    assert "Running stage" not in second.stdout
    assert "didn't change" in second.stdout or "up to date" in second.stdout.lower()
    # a parameter change re-runs only what depends on it
    params["distill"] = {**params.get("distill", {}), "k": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    third = dvc(tmp_path, "repro")
    assert "Running stage 'distill'" in third.stdout
    assert "Running stage 'sources'" not in third.stdout and "Running stage 'base'" not in third.stdout
