"""Registry on the embedded MLflow store (SQLite): register, gate (promote/reject), rollback, status, lock.

Also the pure parts: the paired tests and the decision rule, and the retry policy of MLflow calls.
"""

from __future__ import annotations

import json
import threading

import pytest
from mlflow_helpers import MD5, fake_model, mlflow_template, state_dir_from, write_eval

from vlthinker.registry.client import (
    Registry,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
    RetryPolicy,
    is_transient,
)
from vlthinker.registry.gate import (
    GateError,
    GateSettings,
    decide,
    gate_version,
    mcnemar_exact_p,
    paired_test,
    recover,
    rollback,
)
from vlthinker.registry.lock import GateLock, LockLostError, LockTimeoutError
from vlthinker.registry.register import Provenance, parse_dataset_spec, record_base, register_candidate
from vlthinker.registry.status import registry_status
from vlthinker.state import resolve_stores

N = 100


def first(k: int, n: int = N) -> list[bool]:
    """Items 0..k-1 right, the rest wrong: nested sets, so a higher k dominates a lower one."""
    return [i < k for i in range(n)]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return mlflow_template(tmp_path_factory)


@pytest.fixture
def registry(template, tmp_path):
    stores = resolve_stores(state_dir_from(template, tmp_path / "state"))
    return Registry(stores, "proj", RetryPolicy(attempts=2, backoff_s=0.01))


@pytest.fixture
def add(registry, tmp_path):
    """Register a candidate whose first k held-out items are right; returns its version."""
    counter = iter(range(1000))

    def add(k: int, parent: int | None = None, iteration: int = 1, md5: str = MD5) -> int:
        i = next(counter)
        return register_candidate(
            registry,
            fake_model(tmp_path / f"model{i}"),
            write_eval(tmp_path / f"eval{i}", first(k), md5=md5),
            Provenance(
                iteration=iteration,
                parent_version=parent,
                git_commit="c" * 40,
                pipeline_run_id="run-1",
                config_hash="h",
            ),
        )

    return add


@pytest.fixture
def base(registry, tmp_path):
    return record_base(registry, write_eval(tmp_path / "eval-base", first(50), style="direct"), "tiny-base")


# --------------------------------------------------------------------------------------------------
# Pure statistics
# --------------------------------------------------------------------------------------------------


def test_mcnemar_exact_one_sided():
    assert mcnemar_exact_p(10, 0) == pytest.approx(1 / 1024)
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(0, 5) == 1.0
    assert mcnemar_exact_p(5, 5) == pytest.approx(638 / 1024)
    assert mcnemar_exact_p(6, 1) == pytest.approx(8 / 128)


def test_paired_test_pairs_identical_items_only():
    cand = {"h/a": True, "h/b": True, "h/c": False, "h/only-cand": True}
    base = {"h/a": False, "h/b": True, "h/c": False, "h/only-base": False}
    result = paired_test(cand, base)
    assert result.n == 3 and result.candidate_only == 1 and result.baseline_only == 0
    assert result.difference == pytest.approx(1 / 3)
    with pytest.raises(GateError, match="share no evaluation item"):
        paired_test({"h/x": True}, {"h/y": True})


def test_decision_rule_needs_margin_and_significance():
    cand = {f"h/{i}": i < 70 for i in range(N)}
    base = {f"h/{i}": i < 50 for i in range(N)}
    result = paired_test(cand, base)
    assert decide(result, GateSettings())[0] is True
    promote, reasons = decide(result, GateSettings(margin=0.25))
    assert promote is False and "<= margin" in reasons[0]
    small = paired_test({f"h/{i}": i < 52 for i in range(N)}, base)
    promote, reasons = decide(small, GateSettings())
    assert promote is False and ">= alpha" in reasons[1]


def test_paired_bootstrap_is_seeded_and_agrees_with_mcnemar():
    cand = {f"h/{i}": i < 70 for i in range(N)}
    base = {f"h/{i}": i < 50 for i in range(N)}
    settings = GateSettings(test="bootstrap", bootstrap_samples=2000, seed=1)
    one, two = paired_test(cand, base, settings), paired_test(cand, base, settings)
    assert one == two
    assert one.p_value < 0.01 and one.ci is not None and 0.1 < one.ci[0] < 0.2 < one.ci[1]
    assert decide(one, settings)[0] is True
    worse = paired_test(base, cand, settings)
    assert worse.p_value > 0.9 and decide(worse, settings)[0] is False


def test_dataset_spec_parsing():
    spec = parse_dataset_spec("sft=/data/sft@source,captioned")
    assert (
        spec.role == "sft" and str(spec.path) == "/data/sft" and spec.derived_from == ("source", "captioned")
    )
    assert parse_dataset_spec(f"rl=md5:{MD5}").md5 == MD5


# --------------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------------


class FakeMlflowError(Exception):
    def __init__(self, message: str, error_code: str = "INTERNAL_ERROR"):
        super().__init__(message)
        self.error_code = error_code


def test_retries_transient_failures_with_backoff_then_fails_clearly(tmp_path):
    sleeps: list[float] = []
    reg = Registry(
        resolve_stores(tmp_path),
        "m",
        RetryPolicy(attempts=4, backoff_s=0.1, backoff_max_s=0.3),
        sleep=sleeps.append,
    )
    outage = FakeMlflowError("API request to http://127.0.0.1:1/api failed with exception Connection refused")
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise outage
        return "ok"

    assert reg.call("read", flaky) == "ok" and len(sleeps) == 2
    assert 0.075 <= sleeps[0] <= 0.125 and 0.15 <= sleeps[1] <= 0.25
    sleeps.clear()
    with pytest.raises(RegistryUnavailableError, match="unreachable: write failed 4 time"):
        reg.call("write", lambda: (_ for _ in ()).throw(outage))
    assert len(sleeps) == 3 and max(sleeps) <= 0.3 * 1.25
    denied = FakeMlflowError(
        "API request to endpoint /x failed with error code 401 != 200. Response body: ''"
    )
    with pytest.raises(RegistryAuthError, match="MLFLOW_TRACKING_USERNAME"):
        reg.call("read", lambda: (_ for _ in ()).throw(denied))
    missing = FakeMlflowError("not found", "RESOURCE_DOES_NOT_EXIST")
    with pytest.raises(FakeMlflowError):
        reg.call("read", lambda: (_ for _ in ()).throw(missing))
    assert len(sleeps) == 3  # neither auth failures nor refusals are retried
    assert is_transient(FakeMlflowError("failed with error code 503 != 200"))
    assert not is_transient(FakeMlflowError("bad", "INVALID_PARAMETER_VALUE"))


# --------------------------------------------------------------------------------------------------
# Registry on the embedded store
# --------------------------------------------------------------------------------------------------


def test_register_records_lineage_and_status_json_shape(registry, add, base):
    v1 = add(70)
    mv = registry.require_version(v1)
    tags = mv.tags
    assert mv.source.startswith("models:/m-")
    assert tags["vlt.iteration"] == "1" and tags["vlt.parent_version"] == "base"
    assert tags["vlt.git_commit"] == "c" * 40 and tags["vlt.pipeline_run_id"] == "run-1"
    assert tags["vlt.config_hash"] == "h" and json.loads(tags["vlt.benchmarks"]) == {"heldout": MD5}
    status = registry_status(registry)
    assert set(status) == {"model", "champion", "base", "versions"}
    assert status["model"] == "proj" and status["champion"] is None
    assert status["base"]["metrics"]["heldout_accuracy"] == 0.5
    (entry,) = status["versions"]
    assert {"version", "aliases", "iteration", "decision", "reasons", "metrics", "tags"} <= set(entry)
    assert entry["version"] == v1 and entry["iteration"] == 1 and entry["decision"] is None
    assert entry["metrics"]["heldout_accuracy"] == pytest.approx(0.7)
    json.dumps(status)


def test_a_restarted_registration_closes_what_the_killed_one_left_open(registry, add, base):
    """A kill mid-registration leaves a RUNNING evaluation run and a PENDING logged model behind; the
    restarted registration of the same candidate closes them, and leaves other candidates' alone."""
    from mlflow.entities import LoggedModelStatus

    client, experiment = registry.client, registry.experiment_id()

    def leftovers(iteration: int):
        tags = {"vlt.pipeline_run_id": "run-1", "vlt.iteration": str(iteration), "vlt.stage": "rl"}
        run = client.create_run(experiment, tags={"vlt.kind": "candidate", **tags})
        model = client.create_logged_model(experiment, name="proj", source_run_id=run.info.run_id, tags=tags)
        return run.info.run_id, model.model_id

    killed_run, killed_model = leftovers(iteration=1)
    other_run, other_model = leftovers(iteration=2)  # another candidate's registration, in flight
    version = add(70, iteration=1)

    assert client.get_run(killed_run).info.status == "KILLED"
    closed = client.get_logged_model(killed_model)
    assert closed.status == LoggedModelStatus.FAILED and "vlt.abandoned" in closed.tags
    assert client.get_run(other_run).info.status == "RUNNING"
    assert client.get_logged_model(other_model).status == LoggedModelStatus.PENDING
    source = registry.require_version(version).source  # models:/<model id>
    registered = client.get_logged_model(source.rsplit("/", 1)[-1])
    assert registered.status == LoggedModelStatus.READY and registered.model_id != killed_model


def test_promote_over_base_then_reject_worse_then_rollback(registry, add, base):
    v1 = add(70)
    result = gate_version(registry, v1)
    assert result.decision == "promote" and registry.champion() == v1
    assert result.record["compared_with"]["kind"] == "base"
    v2 = add(65, parent=v1, iteration=2)
    rejected = gate_version(registry, v2)
    assert rejected.decision == "reject" and registry.champion() == v1
    assert "REJECT" in rejected.report() and "champion unchanged" in rejected.report()
    v3 = add(90, parent=v2, iteration=3)
    assert gate_version(registry, v3).decision == "promote"
    status = registry_status(registry)
    assert status["champion"] == v3
    decisions = {v["version"]: v["decision"] for v in status["versions"]}
    assert decisions == {v1: "promote", v2: "reject", v3: "promote"}
    by_version = {v["version"]: v for v in status["versions"]}
    assert by_version[v1]["aliases"] == ["previous-champion"] and by_version[v3]["aliases"] == ["champion"]
    assert any("McNemar" in r for r in by_version[v2]["reasons"])
    with pytest.raises(GateError, match="already gated"):
        gate_version(registry, v2)

    assert rollback(registry, reason="regression in prod")["to"] == v1
    assert registry.champion() == v1 and registry.alias_version("previous-champion") is None
    assert registry.require_version(v3).tags["vlt.decision"] == "rolled-back"
    assert rollback(registry)["to"] is None  # v1 had replaced the base: back to no champion
    assert registry.champion() is None
    with pytest.raises(GateError, match="no champion"):
        rollback(registry)


def test_gate_refuses_different_benchmark_versions_and_leaves_nothing(registry, add, base):
    v1 = add(90, md5="f" * 32 + ".dir")
    with pytest.raises(GateError, match="not comparable"):
        gate_version(registry, v1)
    assert registry.champion() is None and "vlt.decision" not in registry.require_version(v1).tags
    assert GateLock(registry).pending() is None  # the lock was released


def test_first_gate_needs_a_recorded_base(registry, add):
    v1 = add(90)
    with pytest.raises(GateError, match="no recorded base"):
        gate_version(registry, v1)


def test_lock_excludes_waits_and_is_taken_over_with_roll_forward(registry, add, base):
    v1 = add(80)
    holder = GateLock(registry, lease_s=1.0, wait_s=0.0)
    lease = holder.acquire({"op": "test"})
    with pytest.raises(LockTimeoutError, match=holder.owner):
        GateLock(registry, wait_s=0.3, poll_s=0.05).acquire()
    record = {"decision": "promote", "reasons": ["forced"], "previous_champion": None}
    holder.journal(
        lease, {"op": "gate", "version": v1, "decision": "promote", "record": record, "champion_before": None}
    )
    assert registry.champion() is None  # journaled, not applied: the holder "died" here
    result = recover(registry, GateSettings(lease_s=5.0, wait_s=5.0))  # waits for expiry, rolls forward
    assert result["completed"]["intent"]["version"] == v1
    assert registry.champion() == v1 and registry.require_version(v1).tags["vlt.decision"] == "promote"
    with pytest.raises(LockLostError):
        holder.check(lease)
    assert GateLock(registry).pending() is None


def test_concurrent_gates_on_the_embedded_store(registry, add, base):
    versions = [add(k) for k in (60, 70, 80, 90)]
    errors: list[BaseException] = []

    def run(version: int) -> None:
        try:
            gate_version(Registry(registry.stores, "proj", registry.retry), version, GateSettings(wait_s=60))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert registry.champion() == versions[-1]


def test_unreachable_mlflow_fails_clearly_and_registers_nothing(tmp_path):
    from mlflow_helpers import free_port

    from vlthinker.cli import app

    dead = f"http://127.0.0.1:{free_port()}"
    registry = Registry(
        resolve_stores(tmp_path, tracking_uri=dead), "proj", RetryPolicy(attempts=2, backoff_s=0.01)
    )
    with pytest.raises(RegistryUnavailableError, match=f"MLflow at {dead} is unreachable") as err:
        register_candidate(
            registry,
            fake_model(tmp_path / "m"),
            write_eval(tmp_path / "e", first(10)),
            Provenance(iteration=1),
        )
    assert "failed 2 time(s)" in str(err.value)
    from typer.testing import CliRunner

    result = CliRunner().invoke(
        app, ["registry", "status", "--tracking-uri", dead, "--set", "registry.retries=1"]
    )
    assert result.exit_code != 0 and isinstance(result.exception, RegistryUnavailableError)


def test_sft_control_tags_come_only_from_the_candidates_own_items(tmp_path):
    from vlthinker.tasks.registry import control_tags

    candidate = write_eval(tmp_path / "candidate", [True, False, False, True])
    control = write_eval(tmp_path / "control", [True, True, True, False])
    tags = control_tags(str(candidate), str(control))
    assert float(tags["sft_control_heldout_accuracy"]) == 0.75
    assert float(tags["sft_control_accuracy"]) == 0.75 and tags["sft_control_heldout_n"] == "4"

    other_items = write_eval(tmp_path / "other-items", [True, True, True])
    other_benchmark = write_eval(tmp_path / "other-md5", [True, True, True, False], md5="0" * 32 + ".dir")
    for wrong in (other_items, other_benchmark):
        with pytest.raises(RegistryError, match="a control must use the same items") as error:
            control_tags(str(candidate), str(wrong))
        assert str(wrong) in str(error.value)
