"""Kill test: the smoke run SIGKILLed at several points and started again completes, and its registry
ends as an uninterrupted run's does.

One state directory, one run started again after each kill (the whole process group: kfp.local runs
each step as a child process). The kill points:

* iteration 1, SFT, mid-training (after a checkpoint was saved, when the config saves one early);
* iteration 1, gate, mid-registration: a logged model created, its files not yet uploaded, no version;
* iteration 1, gate, holding the gate lock (version registered, nothing decided);
* iteration 2, GRPO, mid-training;
* iteration 2, gate, decision journaled in the lock but not applied (no alias, no decision tag).

kfp.local does not promise an order of independent tasks (iteration 1's gate may run before or after
iteration 2's training), so every run arms all the points not reached yet and is killed at the first
one it reaches; the test goes on until each point has been reached once, then a last run must finish.

The gate points are reached through the test-only pause hook (``VLTHINKER_FAULT_PAUSE``,
:mod:`vlthinker.tasks.pause`): the gate prints a line and sleeps; the test kills on that line. After
each kill: no dataset under its final name is partial, every model directory under its final name is
complete, every dataset the DVC remote lists is whole. At the end: versions, aliases, lineage tags,
decisions and the base record equal those of the session's uninterrupted run (``smoke_reference``)
apart from run ids, timestamps, lock epochs and paths; no version was registered twice; every
version's logged model is READY with its weights; no logged model is left PENDING and no candidate
evaluation run RUNNING (the restarted registration closes what the killed one left open); the gate
lock is free.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from smoke_reference import ROOT, SMOKE, reference_run, vlthinker

from vlthinker.tasks.pause import ENV as PAUSE_ENV
from vlthinker.tasks.pause import MARK as PAUSE_MARK
from vlthinker.tasks.pause import SECONDS_ENV as PAUSE_SECONDS_ENV

ANSI = re.compile(r"\x1b\[[0-9;]*m")
EXECUTING = re.compile(r"Executing task '([^']+)'")
PROGRESS = re.compile(r"\b(sft|rl): step (\d+)/(\d+)\b")
HANG_GUARD_S = 900  # one attempt; a whole smoke run takes ~3 minutes


@dataclass(frozen=True)
class KillPoint:
    """Where to kill: inside kfp task ``task``, on a training progress line or a pause line."""

    label: str
    task: str
    pause: str | None = None  # a VLTHINKER_FAULT_PAUSE point
    training: str | None = None  # "sft" or "rl": kill on a progress line of that step

    def hit(self, task: str | None, line: str) -> bool:
        if task != self.task:
            return False
        if self.pause is not None:
            return f"{PAUSE_MARK} {self.pause} " in line
        match = PROGRESS.search(line)
        if not match or match.group(1) != self.training:
            return False
        step, total = int(match.group(2)), int(match.group(3))
        return step >= max(1, min(24, total // 2))  # past the first checkpoint (save_steps 20) if it can


KILLS = (
    KillPoint("iteration 1 SFT, training", task="sft", training="sft"),
    KillPoint("iteration 1 gate, logged model created, no version", "gate", "registry:create logged model@1"),
    KillPoint("iteration 1 gate, holding the lock", "gate", "gate:locked@1"),
    KillPoint("iteration 2 GRPO, training", task="rl-2", training="rl"),
    KillPoint("iteration 2 gate, decision journaled, not applied", "gate-2", "gate:journaled@2"),
)


# --------------------------------------------------------------------------------------------------
# Running and killing
# --------------------------------------------------------------------------------------------------


def start(state: Path, pauses: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop(PAUSE_ENV, None)
    if pauses:
        env[PAUSE_ENV], env[PAUSE_SECONDS_ENV] = ",".join(pauses), str(HANG_GUARD_S)
    return subprocess.Popen(
        [sys.executable, "-m", "vlthinker.cli", "run", "--config", str(SMOKE), "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own process group: kfp.local's step subprocesses die with it
    )


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # hang guard: wait for the last member of the group to go
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process group {proc.pid} still alive 60 s after SIGKILL")


@dataclass
class Attempt:
    rc: int | None  # None: killed
    output: str
    hit: KillPoint | None = None

    def executed(self) -> list[str]:
        return EXECUTING.findall(self.output)

    def succeeded(self) -> set[str]:
        return set(re.findall(r"Task '([^']+)' finished with status SUCCESS", self.output))


def run_until(state: Path, kills: list[KillPoint]) -> Attempt:
    """Run; kill the group at the first of ``kills`` it reaches, or let it finish."""
    proc = start(state, [k.pause for k in kills if k.pause])
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    task = None
    deadline = time.monotonic() + HANG_GUARD_S
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"hang guard: no end after {HANG_GUARD_S}s; last output:\n{''.join(seen[-40:])}"
                ) from None
            if line is None:
                return Attempt(proc.wait(timeout=60), "".join(seen))
            line = ANSI.sub("", line)
            seen.append(line)
            executing = EXECUTING.search(line)
            if executing:
                task = executing.group(1)
            for kill in kills:
                if kill.hit(task, line):
                    kill_group(proc)
                    return Attempt(None, "".join(seen), kill)
    finally:
        if proc.poll() is None:
            kill_group(proc)


# --------------------------------------------------------------------------------------------------
# Invariants after every kill
# --------------------------------------------------------------------------------------------------


def visible(path: Path, root: Path) -> bool:
    """Under its final name: no hidden component (temp dirs, staging, checkpoints are dot-named)."""
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def check_datasets_whole(state: Path) -> int:
    from vlthinker.records import read_records

    count = 0
    for records in state.rglob("records.jsonl"):
        if not visible(records, state):
            continue
        dataset = records.parent
        for record in read_records(dataset):  # a truncated or broken line raises, naming the file
            image = dataset / record.image
            assert image.is_file(), f"{dataset}: {record.image} is missing (partial dataset)"
            digest = hashlib.sha256(image.read_bytes()).hexdigest()
            assert digest == record.image_sha256, f"{dataset}: {record.image} is not the image recorded"
        count += 1
    return count


def check_models_whole(state: Path) -> None:
    from safetensors import safe_open

    for weights in (state / "pipeline").rglob("model.safetensors"):
        if not visible(weights, state):
            continue
        model = weights.parent
        for name in ("config.json", "tokenizer.json"):
            assert (model / name).is_file(), f"{model}: {name} missing (partial model)"
        with safe_open(str(weights), "pt") as handle:  # a truncated file fails to open
            assert list(handle.keys()), f"{weights}: no tensors"


def check_remote_whole(state: Path) -> None:
    files = state / "dvc-remote" / "files" / "md5"
    for listing in files.glob("*/*.dir"):
        for entry in json.loads(listing.read_text()):
            obj = files / entry["md5"][:2] / entry["md5"][2:]
            assert obj.is_file(), f"{listing.name} lists {entry['relpath']} but the remote lacks it"
            assert hashlib.md5(obj.read_bytes()).hexdigest() == entry["md5"], f"{obj}: corrupted"


def check_invariants(state: Path) -> None:
    check_datasets_whole(state)
    check_models_whole(state)
    check_remote_whole(state)


# --------------------------------------------------------------------------------------------------
# The registry, normalised for comparison
# --------------------------------------------------------------------------------------------------

RUN_IDS = ("vlt.eval_run_id", "vlt.candidate_id")
PIPELINE_RUN_DIR = re.compile(r"vlthinker-\d{4}(-\d{2}){5}-\d+")


def status(state: Path) -> dict:
    result = vlthinker("registry", "status", "--json", "--state-dir", str(state), "--config", str(SMOKE))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def normalised(st: dict, state: Path) -> dict:
    """What must match between two runs: everything but run ids, timestamps, lock epochs and paths."""

    def text(value):
        if not isinstance(value, str):
            return value
        value = value.replace(str(state.resolve()), "<state>").replace(str(state), "<state>")
        return PIPELINE_RUN_DIR.sub("<run>", value)

    versions = []
    for v in sorted(st["versions"], key=lambda v: v["version"]):
        tags = {k: text(val) for k, val in v["tags"].items() if k not in RUN_IDS}
        if "vlt.gate" in tags:
            gate = json.loads(tags["vlt.gate"])
            for key in ("at", "lock_epoch"):
                gate.pop(key, None)
            tags["vlt.gate"] = gate
        if "vlt.datasets" in tags:
            tags["vlt.datasets"] = [
                {k: val for k, val in entry.items() if k != "path"}
                for entry in json.loads(tags["vlt.datasets"])
            ]
        versions.append({**v, "tags": tags})
    base = {k: text(val) for k, val in (st["base"] or {}).items() if k != "run_id"}
    return {"model": st["model"], "champion": st["champion"], "base": base, "versions": versions}


def mlflow_checks(state: Path, model: str) -> None:
    from mlflow import MlflowClient
    from vlthinker.registry.client import Registry
    from vlthinker.registry.lock import GateLock
    from vlthinker.state import resolve_stores

    assert GateLock(Registry(resolve_stores(state), model)).pending() is None, "the gate lock is free"

    client = MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")
    versions = client.search_model_versions(f"name = '{model}'")
    keys = [
        (mv.tags.get("vlt.pipeline_run_id"), mv.tags.get("vlt.iteration"), mv.tags.get("vlt.stage"))
        for mv in versions
    ]
    assert len(keys) == len(set(keys)), f"a candidate was registered twice: {sorted(keys)}"
    for mv in versions:
        full = client.get_model_version(model, mv.version)
        model_id = full.model_id or full.source.rsplit("/", 1)[-1]
        logged = client.get_logged_model(model_id)
        assert str(logged.status) == "READY", f"{model}/{mv.version} points at a {logged.status} model"
        files = {a.path for a in client.list_logged_model_artifacts(model_id)}
        assert {"config.json", "model.safetensors"} <= files, f"{model}/{mv.version}: {sorted(files)}"
    # what a killed registration left open was closed by the restarted one
    experiment = client.get_experiment_by_name(model).experiment_id
    pending = [m.model_id for m in client.search_logged_models([experiment]) if str(m.status) == "PENDING"]
    assert not pending, f"logged models left PENDING: {pending}"
    running = client.search_runs(
        [experiment], "tags.`vlt.kind` = 'candidate' and attributes.status = 'RUNNING'"
    )
    assert not running, f"evaluation runs left RUNNING: {[r.info.run_id for r in running]}"


# --------------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------------


def test_run_killed_at_each_point_and_restarted_ends_like_an_uninterrupted_run(tmp_path, tmp_path_factory):
    state = tmp_path / "state"
    attempts: list[Attempt] = []
    left = list(KILLS)
    while left:
        attempt = run_until(state, left)
        attempts.append(attempt)
        assert attempt.hit is not None, (
            f"the run ended (rc {attempt.rc}) before reaching {[k.label for k in left]}:\n"
            f"{attempt.output[-4000:]}"
        )
        left.remove(attempt.hit)
        check_invariants(state)
    final = run_until(state, [])
    attempts.append(final)
    assert final.rc == 0, f"the restarted run failed:\n{final.output[-6000:]}"
    assert len(attempts) == len(KILLS) + 1

    # kfp.local's cache: a step that finished before a kill is not run again; the killed one is
    done: set[str] = set()
    for i, (before, after) in enumerate(itertools.pairwise(attempts)):
        done |= before.succeeded()
        again = sorted(done & set(after.executed()))
        assert not again, f"finished before the kill at {before.hit.label!r}, yet run again: {again}"
        later = [task for attempt in attempts[i + 1 :] for task in attempt.executed()]
        assert before.hit.task in later, f"{before.hit.task} was killed, so a later run runs it again"
    everything = "".join(a.output for a in attempts)
    # both gates killed holding the lock are taken over by the next gate, which never waits for the
    # dead holder's lease (it is taken over at once; or its lease ran out while other steps ran)
    assert everything.count("was left unfinished; taking it over") == 2, everything[-6000:]
    assert "waiting for the gate lock" not in everything, everything[-6000:]
    # the gate killed after journaling: the next run completes its decision and does not gate again
    assert everything.count("completing the unfinished gate") == 1, everything[-6000:]
    assert re.search(r"gate: vlthinker-smoke/\d+ was already gated", everything), everything[-6000:]
    check_invariants(state)

    killed = status(state)
    mlflow_checks(state, killed["model"])

    ref_state, ref_result, _ = reference_run(tmp_path_factory)
    assert ref_result.returncode == 0, ref_result.stdout[-3000:] + ref_result.stderr[-3000:]
    reference = status(ref_state)
    assert [v["iteration"] for v in sorted(killed["versions"], key=lambda v: v["version"])] == [1, 2]
    assert normalised(killed, state) == normalised(reference, ref_state)


@pytest.mark.parametrize("kill", KILLS, ids=[k.label for k in KILLS])
def test_kill_points_name_steps_of_the_graph(kill):
    """A renamed task or pause point would make the kill test wait for a line that never comes."""
    from pipelines.graph import build_pipeline
    from vlthinker.config import load_config

    spec = build_pipeline(load_config(SMOKE)).pipeline_spec
    assert kill.task in spec.root.dag.tasks
    if kill.pause:
        source = (ROOT / "src" / "vlthinker" / "tasks" / "registry.py").read_text()
        source += (ROOT / "src" / "vlthinker" / "registry" / "gate.py").read_text()
        source += (ROOT / "src" / "vlthinker" / "registry" / "register.py").read_text()
        kind, name = kill.pause.split("@", 1)[0].split(":", 1)
        assert (f'"{name}"' in source) or (f'"{kind}:{name}"' in source), kill.pause
