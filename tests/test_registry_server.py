"""The registry against a real ``mlflow server`` with basic-auth on 127.0.0.1 (started here, no services needed).

Covers: authentication, promote, reject, rollback, five gates at once (exactly one correct champion,
no lost update), and MLflow going away in the middle of a gate (a clear error; nothing half-written:
a gate that had journaled its decision is completed after the restart, one that had not changed
nothing).
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading

import pytest
from mlflow_helpers import MlflowServer, fake_model, mlflow_template, write_eval

from vlthinker.registry.client import Registry, RegistryAuthError, RegistryUnavailableError, RetryPolicy
from vlthinker.registry.gate import GateSettings, gate_version, recover, rollback, version_record
from vlthinker.registry.lock import GateLock
from vlthinker.registry.register import Provenance, record_base, register_candidate
from vlthinker.registry.status import registry_status
from vlthinker.state import resolve_stores

N = 100
POLICY = RetryPolicy(attempts=3, backoff_s=0.2, backoff_max_s=0.5, request_timeout_s=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if importlib.util.find_spec("flask_wtf") is None:
        pytest.fail("the basic-auth MLflow server needs Flask-WTF: install mlflow[auth] (the dev extra)")
    root = tmp_path_factory.mktemp("mlflow-server")
    srv = MlflowServer(root, mlflow_template(tmp_path_factory))
    srv.start()
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"] = srv.USER
    os.environ["MLFLOW_TRACKING_PASSWORD"] = srv.PASSWORD
    try:
        yield srv
    finally:
        srv.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Project:
    """One registered model on the server, with helpers to add candidates and read the outcome."""

    def __init__(self, server: MlflowServer, tmp_path, name: str):
        self.stores = resolve_stores(tmp_path / "state", tracking_uri=server.uri)
        self.name = name
        self.tmp = tmp_path
        self.count = 0
        self.registry = self.open()

    def open(self) -> Registry:
        return Registry(self.stores, self.name, POLICY)

    def base(self, k: int) -> None:
        record_base(
            self.registry,
            write_eval(self.tmp / "eval-base", [i < k for i in range(N)], style="direct"),
            "tiny",
        )

    def add(self, k: int, parent: int | None = None) -> int:
        self.count += 1
        i = self.count
        return register_candidate(
            self.registry,
            fake_model(self.tmp / f"m{i}"),
            write_eval(self.tmp / f"e{i}", [j < k for j in range(N)]),
            Provenance(iteration=i, parent_version=parent, pipeline_run_id="kfp-test"),
        )


def promotion_chain(registry: Registry) -> list[int]:
    """Champion, the version it replaced, the one before... down to the base (None)."""
    chain, current = [], registry.champion()
    while current is not None:
        chain.append(current)
        current = version_record(registry.require_version(current))["previous_champion"]
    return chain


def test_credentials_are_required(server, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    registry = Registry(resolve_stores(tmp_path, tracking_uri=server.uri), "nobody", POLICY)
    with pytest.raises(RegistryAuthError, match="MLFLOW_TRACKING_USERNAME"):
        registry.ensure_model()


def test_promote_reject_and_rollback_on_the_server(server, tmp_path):
    project = Project(server, tmp_path, "serial")
    project.base(50)
    v1 = project.add(70)
    assert gate_version(project.registry, v1).decision == "promote"
    v2 = project.add(60, parent=v1)
    assert gate_version(project.registry, v2).decision == "reject"
    v3 = project.add(85, parent=v2)
    assert gate_version(project.registry, v3).decision == "promote"
    status = registry_status(project.registry)
    assert status["champion"] == v3 and status["base"]["metrics"]["heldout_accuracy"] == 0.5
    assert [v["decision"] for v in status["versions"]] == ["promote", "reject", "promote"]
    assert rollback(project.registry)["to"] == v1
    assert project.registry.champion() == v1
    assert registry_status(project.registry)["versions"][2]["decision"] == "rolled-back"


def test_five_gates_at_once_give_one_correct_champion_and_lose_no_update(server, tmp_path):
    project = Project(server, tmp_path, "race")
    project.base(40)
    v1 = project.add(50)
    assert gate_version(project.registry, v1).decision == "promote"
    candidates = {project.add(k, parent=v1): k for k in (45, 60, 70, 80, 90)}
    results, errors = {}, []
    barrier = threading.Barrier(len(candidates))

    def gate(version: int) -> None:
        try:
            registry = project.open()  # its own client, as another process would have
            barrier.wait()
            results[version] = gate_version(registry, version, GateSettings(lease_s=60, wait_s=120))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=gate, args=(v,)) for v in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    best = max(candidates, key=candidates.get)
    registry = project.registry
    assert registry.champion() == best  # exactly one champion: the best candidate, whatever the order
    promoted = {v for v, r in results.items() if r.decision == "promote"}
    chain = promotion_chain(registry)
    # No lost update: every promotion is on the one chain of champions, each replaced exactly the
    # champion of its moment, and the chain ends at the champion that was there before the race.
    assert set(chain) == promoted | {v1} and chain[-1] == v1 and len(chain) == len(set(chain))
    for version, result in results.items():
        assert registry.require_version(version).tags["vlt.decision"] == result.decision
        if result.decision == "reject":
            assert candidates[version] <= candidates.get(result.champion_before, 50)
    worst = min(candidates, key=candidates.get)
    assert results[worst].decision == "reject"
    epochs = sorted(r.record["lock_epoch"] for r in results.values())
    assert epochs == list(range(1, 6))  # five gates, five consecutive lock epochs: serialised
    assert GateLock(registry).pending() is None


def _stop_at(server: MlflowServer, phase: str):
    def hook(name: str) -> None:
        if name == phase:
            server.stop()

    return hook


def test_outage_mid_gate_leaves_no_half_written_state(server, tmp_path):
    project = Project(server, tmp_path, "outage")
    project.base(50)
    v1 = project.add(70)
    settings = GateSettings(lease_s=8.0, wait_s=30.0)
    assert gate_version(project.registry, v1, settings).decision == "promote"
    v2 = project.add(90, parent=v1)

    # 1. MLflow goes away after the decision, before it is journaled: nothing may change.
    with pytest.raises(RegistryUnavailableError) as err:
        gate_version(project.registry, v2, settings, on_phase=_stop_at(server, "decided"))
    assert "unreachable" in str(err.value) and "before journaling anything" in str(err.value)
    server.start()
    registry = project.open()
    assert registry.champion() == v1 and "vlt.decision" not in registry.require_version(v2).tags
    assert registry.alias_version("previous-champion") is None

    # 2. MLflow goes away between the champion alias and the decision tags (the worst moment).
    with pytest.raises(RegistryUnavailableError) as err:
        gate_version(registry, v2, settings, on_phase=_stop_at(server, "set-previous-champion"))
    assert "journaled its decision" in str(err.value) and "vlthinker registry recover" in str(err.value)
    server.start()
    registry = project.open()
    pending = GateLock(registry).pending()
    assert pending["intent"]["version"] == v2 and not pending["applied"]
    recover(registry, settings)  # waits out the dead gate's lease, then rolls its intent forward
    status = registry_status(registry)
    assert status["champion"] == v2
    by_version = {v["version"]: v for v in status["versions"]}
    assert by_version[v2]["decision"] == "promote" and by_version[v1]["aliases"] == ["previous-champion"]
    assert json.loads(by_version[v2]["tags"]["vlt.gate"])["previous_champion"] == v1
    assert GateLock(registry).pending() is None
