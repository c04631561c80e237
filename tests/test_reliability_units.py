"""Unit checks behind the kill test: a dead gate-lock holder on this host is taken over at once, the
test-only pause hook is inert by default, and per-step timings are parsed from a run's output.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from mlflow_helpers import mlflow_template, state_dir_from

from pipelines.timings import parse_timings, read_timings, timings_summary, write_timings
from vlthinker.registry.client import Registry, RetryPolicy
from vlthinker.registry.gate import GateSettings, recover
from vlthinker.registry.lock import GateLock, LockTimeoutError, holder_is_dead, process_identity
from vlthinker.state import resolve_stores
from vlthinker.tasks import pause
from vlthinker.tasks.data import captioner_name
from vlthinker.tasks.timing import timed, timing_line


@pytest.fixture
def registry(tmp_path_factory, tmp_path):
    stores = resolve_stores(state_dir_from(mlflow_template(tmp_path_factory), tmp_path / "state"))
    return Registry(stores, "proj", RetryPolicy(attempts=2, backoff_s=0.01))


def _tags_of(pid: int, identity: str, host: str | None = None) -> dict[str, str]:
    return {
        "vlt.lock.host": host or socket.gethostname(),
        "vlt.lock.pid": str(pid),
        "vlt.lock.process": identity,
    }


@pytest.mark.skipif(not process_identity(), reason="needs /proc")
def test_holder_is_dead_only_when_provably_gone_from_this_host():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tags = _tags_of(child.pid, process_identity(child.pid))
        assert not holder_is_dead(tags), "a live holder is alive"
        assert not holder_is_dead(_tags_of(os.getpid(), process_identity())), "we are alive"
    finally:
        child.kill()
        child.wait()
    assert holder_is_dead(tags)
    assert not holder_is_dead({**tags, "vlt.lock.host": "another-host"}), "another host: the lease decides"
    assert not holder_is_dead({k: v for k, v in tags.items() if k != "vlt.lock.process"}), "no identity"
    # a live pid with another start time is a reused pid: its holder is gone
    reused = _tags_of(os.getpid(), process_identity().rsplit("/", 1)[0] + "/1")
    assert holder_is_dead(reused)


HOLDER = textwrap.dedent(
    """
    import json, os, signal, sys
    from vlthinker.registry.client import Registry, RetryPolicy
    from vlthinker.registry.lock import GateLock
    from vlthinker.state import resolve_stores
    registry = Registry(resolve_stores(sys.argv[1]), "proj", RetryPolicy(attempts=2, backoff_s=0.01))
    lock = GateLock(registry, lease_s=600.0)
    lease = lock.acquire({"op": "test"})
    lock.journal(lease, {"op": "gate", "version": 1, "decision": "reject", "champion_before": None,
                         "record": {"decision": "reject", "reasons": ["journaled by a holder that died"]}})
    print("journaled", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.skipif(not process_identity(), reason="needs /proc")
def test_a_holder_killed_mid_gate_is_taken_over_at_once_and_its_intent_rolled_forward(registry, tmp_path):
    from mlflow_helpers import fake_model, write_eval

    from vlthinker.registry.register import Provenance, register_candidate

    version = register_candidate(
        registry,
        fake_model(tmp_path / "model"),
        write_eval(tmp_path / "eval", [True] * 10),
        Provenance(iteration=1, pipeline_run_id="run-1"),
    )
    assert version == 1
    died = subprocess.run(
        [sys.executable, "-c", HOLDER, str(registry.stores.state_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert died.returncode == -signal.SIGKILL and "journaled" in died.stdout, died.stderr[-2000:]
    pending = GateLock(registry).pending()
    assert pending is not None and pending["intent"]["version"] == 1 and not pending["applied"]
    # the lease has ~10 minutes left and no wait is allowed: only a take-over of the dead holder succeeds
    result = recover(registry, GateSettings(lease_s=120.0, wait_s=0.0))
    assert result["completed"]["intent"]["version"] == 1
    assert registry.require_version(1).tags["vlt.decision"] == "reject"
    assert GateLock(registry).pending() is None


def test_a_live_holder_on_this_host_still_blocks_until_its_lease_ends(registry):
    holder = GateLock(registry, lease_s=600.0)
    holder.acquire({"op": "test"})
    with pytest.raises(LockTimeoutError, match=holder.owner):
        GateLock(registry, wait_s=0.2, poll_s=0.05).acquire()


def test_pause_hook_is_inert_by_default(monkeypatch, capsys):
    monkeypatch.delenv(pause.ENV, raising=False)
    started = time.monotonic()
    pause.pause_point("gate:locked")
    assert time.monotonic() - started < 5 and capsys.readouterr().out == ""

    class Fake:
        def call(self, what, fn, *args, **kwargs):
            return fn(*args, **kwargs)

    fake = Fake()
    pause.pause_after_registry_calls(fake)
    assert "call" not in vars(fake), "unarmed: the registry is left as it is"


def test_pause_hook_announces_the_armed_point(monkeypatch, capsys):
    monkeypatch.setenv(pause.ENV, "gate:journaled, registry:upload model, gate:locked@2")
    monkeypatch.setenv(pause.SECONDS_ENV, "0")
    pause.pause_point("gate:decided", 1)
    pause.pause_point("gate:locked", 1)
    assert capsys.readouterr().out == ""
    pause.pause_point("gate:locked", 2)
    assert f"{pause.MARK} gate:locked@2 (pid {os.getpid()})" in capsys.readouterr().out
    pause.pause_point("gate:journaled", 3)
    assert f"{pause.MARK} gate:journaled@3 (pid {os.getpid()})" in capsys.readouterr().out

    class Fake:
        def call(self, what, fn, *args, **kwargs):
            return fn(*args, **kwargs)

    fake = Fake()
    pause.pause_after_registry_calls(fake)
    assert fake.call("create logged model", lambda: 1) == 1
    assert capsys.readouterr().out == ""
    assert fake.call("upload model", lambda: 2) == 2
    assert "registry:upload model" in capsys.readouterr().out


def test_timings_pair_each_timed_step_with_its_task(tmp_path, capsys):
    with timed("sft"):
        pass
    with pytest.raises(ValueError), timed("gate"):
        raise ValueError("boom")
    printed = capsys.readouterr().out.splitlines()
    text = "\n".join(
        [
            "12:00:00.000 - INFO - Executing task \x1b[96m'sft-2'\x1b[0m",
            "    [KFP Executor] noise",
            "    " + printed[0],
            "12:00:01.000 - INFO - Executing task 'gate'",
            "    " + printed[1],
            "12:00:02.000 - INFO - Executing task 'rl'",
            "    " + timing_line("rl", 1.0, True)[:-8],  # cut short by a kill
        ]
    )
    steps = parse_timings(text)
    assert [(s["task"], s["step"], s["ok"]) for s in steps] == [
        ("sft-2", "sft", True),
        ("gate", "gate", False),
    ]
    summary = timings_summary(text, wall_seconds=10.0)
    assert summary["steps_run"] == 2 and summary["steps_seconds"] == pytest.approx(
        sum(s["seconds"] for s in steps)
    )
    log = tmp_path / "run-1.log"
    log.write_text(text)
    write_timings(log, 10.0)
    assert read_timings(log)["wall_seconds"] == 10.0
    assert json.loads((tmp_path / "run-1.timings.json").read_text())["steps_run"] == 2


def test_captioner_is_named_by_model_not_by_run_path(tmp_path):
    """The name lands in the captioned dataset: a run-specific path would change its hash every run."""
    from vlthinker.config import Config, config_from_dict

    names = set()
    for run in ("run-a", "run-b"):
        model = tmp_path / run / "base-model" / "model"
        model.mkdir(parents=True)
        (model / "base_report.json").write_text(json.dumps({"model_sha256": "ab" * 32}))
        names.add(captioner_name(Config(), str(model)))
    assert names == {"hf:tiny@sha256:" + "ab" * 8}
    explicit = config_from_dict(
        {"caption": {"backend": {"kind": "hf", "model": "Qwen/Qwen2.5-VL-3B-Instruct"}}}
    )
    assert captioner_name(explicit, str(tmp_path / "run-a")) == "hf:Qwen/Qwen2.5-VL-3B-Instruct"
