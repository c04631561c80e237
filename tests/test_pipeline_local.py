"""End to end: the real pipeline through kfp.local with the smoke config, then the registry it left.

One uninterrupted run (the costly part, shared with the kill test through ``smoke_reference``) serves
the checks; a second run must come from the cache;
a run whose MLflow store cannot be opened fails in the first step that needs it, leaves no registry
state, and after the fix resumes from the cache.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from smoke_reference import SMOKE, reference_run, vlthinker


def status(state_dir: Path, *extra: str) -> dict:
    result = vlthinker(
        "registry", "status", "--json", "--state-dir", str(state_dir), "--config", str(SMOKE), *extra
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    state, result, seconds = reference_run(tmp_path_factory)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return state, result, seconds


def test_run_registers_each_iteration_with_lineage(smoke_run):
    state, result, _ = smoke_run
    st = status(state)
    assert st["base"] is not None and "heldout_accuracy" in st["base"]["metrics"]
    versions = sorted(st["versions"], key=lambda v: v["version"])
    assert [v["iteration"] for v in versions] == [1, 2]
    for v in versions:
        assert v["decision"] in ("promote", "reject")
        assert v["reasons"], "every decision carries its reasons"
        assert 0.0 <= v["metrics"]["heldout_accuracy"] <= 1.0
        tags = v["tags"]
        for role in ("train", "sft_data", "rl_data", "eval:heldout"):
            assert len(tags[f"vlt.dataset.{role}"]) == 36, role  # <md5>.dir
        assert tags["vlt.config_hash"] and tags["vlt.pipeline_run_id"] != "none"
        # the iteration's SFT model alone, on the same items: the control beside the candidate
        assert 0.0 <= float(tags["vlt.sft_control_heldout_accuracy"]) <= 1.0
        assert tags["vlt.sft_control_heldout_n"] == tags["vlt.metric.heldout_n"]
    assert versions[1]["tags"]["vlt.parent_version"] == str(versions[0]["version"])
    promoted = [v for v in versions if v["decision"] == "promote"]
    if promoted:
        assert st["champion"] == promoted[-1]["version"]
    else:
        assert st["champion"] is None
    out = result.stdout
    assert "champion:" in out and "mlflow ui --backend-store-uri" in out
    assert "base model: held-out accuracy" in out
    # the base asked to reason step by step on the same items: a control beside its direct answers
    control = st["base"]["reasoning_control"]
    assert control["heldout_n"] == st["base"]["metrics"]["heldout_n"]
    assert f"{100 * control['heldout_accuracy']:.1f}% asked to reason step by step (a control)" in out
    assert "SFT only" in out
    for v in versions:  # each iteration's row shows its control beside its candidate
        control = f"{100 * float(v['tags']['vlt.sft_control_heldout_accuracy']):.1f}%"
        candidate = f"{100 * v['metrics']['heldout_accuracy']:.1f}%"
        assert re.search(
            rf"^\s+{v['iteration']}\s+{v['version']}\s+\S+\s+\S+\s+{re.escape(control)}\s+"
            rf"{re.escape(candidate)}\s",
            out,
            re.M,
        ), out[-2000:]


def test_run_writes_each_steps_own_compute_time(smoke_run):
    state, result, _ = smoke_run
    timings = sorted((state / "logs").glob("run-*.timings.json"))[0]  # the first run's
    summary = json.loads(timings.read_text())
    executed = re.findall(r"Executing task '([^']+)'", re.sub(r"\x1b\[[0-9;]*m", "", result.stdout))
    assert [s["task"] for s in summary["steps"]] == executed, "one timing per step that ran"
    assert all(s["ok"] and s["seconds"] > 0 for s in summary["steps"])
    assert 0 < summary["steps_seconds"] < summary["wall_seconds"]
    assert f"pipeline: {len(executed)} step(s) ran" in result.stdout + result.stderr


def test_lineage_reaches_the_sources(smoke_run):
    state, _, _ = smoke_run
    result = vlthinker(
        "lineage", "vlthinker-smoke/2", "--json", "--state-dir", str(state), "--config", str(SMOKE)
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "vlthinker-smoke" in text and "train" in text and "sft_data" in text


def test_rerun_with_nothing_changed_is_cached(smoke_run):
    state, _, first_seconds = smoke_run
    started = time.monotonic()
    result = vlthinker("run", "--config", str(SMOKE), "--state-dir", str(state))
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Executing task" not in result.stdout.replace("cached", "") or "cached" in result.stdout.lower()
    assert seconds < first_seconds / 2, (seconds, first_seconds)
    st = status(state)
    assert len(st["versions"]) == 2, "a cached re-run registers nothing new"


def test_failing_step_leaves_registry_untouched_then_resumes(tmp_path):
    state = tmp_path / "state"
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the MLflow store's directory should be")
    uri = f"sqlite:///{blocker}/mlflow.db"
    failed = vlthinker("run", "--config", str(SMOKE), "--state-dir", str(state), "--tracking-uri", uri)
    assert failed.returncode != 0
    assert "FAILURE" in failed.stdout + failed.stderr
    assert not (blocker.is_dir() and (blocker / "mlflow.db").exists()), "nothing was registered"
    blocker.unlink()
    blocker.mkdir()
    resumed = vlthinker("run", "--config", str(SMOKE), "--state-dir", str(state), "--tracking-uri", uri)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # the steps that had finished before the failure come from the cache
    plain = re.sub(r"\x1b\[[0-9;]*m", "", resumed.stdout)
    failed_plain = re.sub(r"\x1b\[[0-9;]*m", "", failed.stdout)
    assert (
        "Executing task 'sft'" in failed_plain and "Task 'sft' finished with status FAILURE" in failed_plain
    )
    assert "Executing task 'base-model'" not in plain, "steps finished before the failure are not run again"
    assert "Executing task 'sft'" in plain
    st = status(state, "--tracking-uri", uri)
    assert [v["iteration"] for v in sorted(st["versions"], key=lambda v: v["version"])] == [1, 2]
