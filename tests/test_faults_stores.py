"""Fault injection: MLflow down, slow, stalled or losing responses; the DVC remote unwritable (issue 9).

Driven through the registry tasks the KFP components call (``vlthinker.tasks.registry``) on the smoke
config, against real stores: the embedded SQLite MLflow and a local DVC remote, or a real
``mlflow server`` behind :class:`~mlflow_helpers.SlowProxy` (tests/test_registry_server.py already
covers MLflow going away in the middle of a gate and basic-auth). Each fault must end in a known
state: finished, or stopped with an error naming the store and the cause after bounded retries,
with nothing half-registered; after the fault is gone the same task finishes, registering once.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from mlflow_helpers import (
    MlflowServer,
    fake_model,
    free_port,
    mlflow_template,
    proxy_to,
    run_with_hang_guard,
    start_auth_server,
    state_dir_from,
    write_eval,
)

from vlthinker.config import load_config
from vlthinker.datasets_dvc import DatasetStoreError, dir_md5, remote_has
from vlthinker.registry.client import Registry, RegistryUnavailableError
from vlthinker.state import resolve_stores
from vlthinker.tasks import registry as tasks
from vlthinker.tasks.data import make_sources, publish

ROOT = Path(__file__).resolve().parents[1]
FAST_RETRIES = {"registry.retries": 3, "registry.backoff_s": 0.01, "registry.backoff_max_s": 0.02}


def smoke_config(**overrides):
    return load_config(ROOT / "recipes" / "smoke.yaml", {**FAST_RETRIES, **overrides})


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("store-faults")
    make_sources(smoke_config(), str(root / "train"), str(root / "heldout"))
    return root


class Run:
    """One pipeline's registry side: base and candidate evaluations on the smoke held-out set."""

    def __init__(self, sets: Path, tmp: Path, name: str = "run-1"):
        self.heldout, self.train, self.tmp, self.label = sets / "heldout", sets / "train", tmp, name
        md5 = dir_md5(self.heldout)
        n = 60
        self.model = fake_model(tmp / "model")
        self.base_eval = write_eval(
            tmp / "eval-base", [i < 10 for i in range(n)], md5=md5, style="direct", dataset_dir=self.heldout
        )
        self.cand_eval = write_eval(
            tmp / "eval-cand", [i < 40 for i in range(n)], md5=md5, dataset_dir=self.heldout
        )

    def record_base(self, config, state: Path, uri: str, remote: Path):
        return tasks.record_base(config, str(state), uri, str(remote), str(self.model), str(self.base_eval))

    def gate(self, config, state: Path, uri: str, remote: Path, datasets: dict):
        return tasks.gate(
            config,
            str(state),
            uri,
            str(remote),
            self.label,
            1,
            str(self.model),
            str(self.cand_eval),
            datasets,
        )


def registry_of(config, state: Path, uri: str = "") -> Registry:
    from vlthinker.registry.client import open_registry

    return open_registry(config, resolve_stores(state, uri or None))


# --------------------------------------------------------------------------------------------------
# DVC remote unwritable: stop before registering anything
# --------------------------------------------------------------------------------------------------


def test_unwritable_dvc_remote_stops_before_registering(sets, tmp_path, tmp_path_factory, monkeypatch):
    config = smoke_config()
    state = state_dir_from(mlflow_template(tmp_path_factory), tmp_path / "state")
    run = Run(sets, tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    unwritable = blocker / "remote"  # root cannot chmod its way out of this: a path under a file

    with pytest.raises(DatasetStoreError) as err:
        publish(str(run.train), str(unwritable))
    assert f"the DVC remote {unwritable} failed" in str(err.value) and str(run.train) in str(err.value)
    assert "Not a directory" in str(err.value)

    with pytest.raises(DatasetStoreError) as err:
        run.record_base(config, state, "", unwritable)
    assert str(unwritable) in str(err.value) and str(run.heldout) in str(err.value)
    client = registry_of(config, state).client
    assert client.search_registered_models() == [], "nothing registered"
    assert client.search_experiments(filter_string="name = 'vlthinker-smoke'") == []

    # a healthy remote: the base is recorded, the training set published
    remote = tmp_path / "remote"
    run.record_base(config, state, "", remote)
    train = {"train": {**publish(str(run.train), str(remote)), "path": str(run.train)}}

    # the remote fails under the push of the gate (a full or read-only remote disk): no version
    from dvc.repo import Repo

    def failing_push(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(remote / "files"))

    monkeypatch.setattr(Repo, "push", failing_push)
    with pytest.raises(DatasetStoreError) as err:
        run.gate(config, state, "", remote, train)
    assert "Read-only file system" in str(err.value) and str(remote) in str(err.value)
    registry = registry_of(config, state)
    assert registry.versions() == []
    experiment = registry.experiment_id()
    assert registry.client.search_logged_models(experiment_ids=[experiment]) == []
    runs = registry.client.search_runs([experiment])
    assert [r.data.tags["vlt.kind"] for r in runs] == ["base"], "no candidate evaluation logged"

    # the remote is back: the same task registers the candidate, once, with its lineage
    monkeypatch.undo()
    result = run.gate(config, state, "", remote, train)
    assert result["version"] == 1 and result["decision"] in ("promote", "reject")
    (version,) = registry.versions()
    assert version.tags["vlt.dataset.train"] == train["train"]["dvc_md5"]
    assert remote_has(version.tags["vlt.dataset.eval:heldout"], remote)
    assert run.gate(config, state, "", remote, train)["version"] == 1 and len(registry.versions()) == 1


# --------------------------------------------------------------------------------------------------
# MLflow down: bounded retries, then a clear stop
# --------------------------------------------------------------------------------------------------


def test_mlflow_down_stops_recording_the_base_and_gating_clearly(sets, tmp_path, capsys):
    config = smoke_config()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run = Run(sets, tmp_path)
    remote = tmp_path / "remote"

    for task in (
        lambda: run.record_base(config, tmp_path / "state", dead, remote),
        lambda: run.gate(config, tmp_path / "state", dead, remote, {}),
    ):
        capsys.readouterr()
        with pytest.raises(RegistryUnavailableError) as err:
            run_with_hang_guard(task)
        message = str(err.value)
        assert f"MLflow at {dead} is unreachable" in message and "failed 3 time(s)" in message
        assert "last error:" in message
        retries = [line for line in capsys.readouterr().out.splitlines() if "retry" in line]
        assert [line.split("; ")[-1].split(" in ")[0] for line in retries] == ["retry 1/2", "retry 2/2"]


# --------------------------------------------------------------------------------------------------
# A real mlflow server behind a proxy: slow, stalled, losing responses
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_auth_server(tmp_path_factory, "mlflow-faults")
    yield srv
    srv.stop()


@pytest.fixture
def proxy(server, monkeypatch):
    slow = proxy_to(server, monkeypatch, timeout_s=2)
    yield slow
    slow.close()


def test_slow_mlflow_is_waited_for(sets, tmp_path, proxy, capsys):
    config = smoke_config(**{"project": "faults-slow"})
    proxy.delay_s = 0.15  # every response late, still within the 2 s request timeout
    run = Run(sets, tmp_path)
    record = run_with_hang_guard(
        lambda: run.record_base(config, tmp_path / "state", proxy.uri, tmp_path / "r")
    )
    assert "retry" not in capsys.readouterr().out
    assert registry_of(config, tmp_path, proxy.uri).base_record()["run_id"] == record["run_id"]


def test_stalled_mlflow_is_retried_within_bounds_then_stops(sets, tmp_path, proxy, capsys):
    config = smoke_config(**{"project": "faults-stalled"})
    run = Run(sets, tmp_path)
    proxy.delay_s = 3600  # answers never come: each attempt times out after 2 s
    with pytest.raises(RegistryUnavailableError) as err:
        run_with_hang_guard(lambda: run.record_base(config, tmp_path / "state", proxy.uri, tmp_path / "r"))
    message = str(err.value)
    assert f"MLflow at {proxy.uri} is unreachable" in message and "failed 3 time(s)" in message
    assert "timeout" in message.lower()
    assert proxy.requests == 3, "exactly the configured attempts, no hidden retries"

    proxy.delay_s = 0  # MLflow answers again: the same task finishes, one base record
    record = run_with_hang_guard(
        lambda: run.record_base(config, tmp_path / "state", proxy.uri, tmp_path / "r")
    )
    registry = registry_of(config, tmp_path, proxy.uri)
    assert registry.base_record()["run_id"] == record["run_id"]
    finished = registry.client.search_runs([registry.experiment_id()], "attributes.status = 'FINISHED'")
    assert [r.info.run_id for r in finished] == [record["run_id"]]


def test_lost_response_to_version_creation_registers_once(sets, tmp_path, proxy, capsys):
    config = smoke_config(**{"project": "faults-lossy"})
    run = Run(sets, tmp_path)
    remote = tmp_path / "remote"
    run_with_hang_guard(lambda: run.record_base(config, tmp_path / "state", proxy.uri, remote))
    train = {"train": {**publish(str(run.train), str(remote)), "path": str(run.train)}}

    # the server creates the version but its answer is lost: the retry must find it, not add one
    proxy.drop_response_to, proxy.drops = b"/model-versions/create", 1
    result = run_with_hang_guard(lambda: run.gate(config, tmp_path / "state", proxy.uri, remote, train))
    assert proxy.drops == 0, "the fault happened"
    assert any(
        "create version of faults-lossy failed" in line for line in capsys.readouterr().out.splitlines()
    )
    registry = registry_of(config, tmp_path, proxy.uri)
    assert [int(v.version) for v in registry.versions()] == [result["version"]] == [1]
    assert registry.require_version(1).tags["vlt.decision"] == result["decision"]


def test_environment_is_restored():
    """The proxy fixture's credentials do not leak into other tests of this worker."""
    assert os.environ.get("MLFLOW_TRACKING_PASSWORD") != MlflowServer.PASSWORD
