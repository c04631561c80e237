"""Fault injection in the training and evaluation steps' MLflow logging; atomic swaps that fail (issue 9).

The SFT step trains the tiny VLM for a few steps on a few distilled items (seconds), against a dead
port or a real ``mlflow server`` behind :class:`~mlflow_helpers.SlowProxy`:

* MLflow down when the step starts: bounded retries (the registry's policy), then an error naming
  the tracking URI, before any training — also in a fresh process where nothing set MLflow's own
  HTTP retries (those alone wait minutes per call);
* MLflow lost in the middle of training: the metric logging is retried, then the step stops
  clearly; once MLflow is back the re-run resumes from the checkpoint into the same MLflow run;
* training failing while MLflow is down: the training error comes out, not MLflow's;
* a lost answer to a run's creation (evaluation or training run) leaves one run, not two;
* :func:`vlthinker.fsutil.swap_into_place` whose second rename fails puts the old directory back;
  :func:`vlthinker.fsutil.replace_dir` whose copy or swap fails leaves the old directory, no staging,
  and a source it was moving back in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mlflow_helpers import (
    MlflowServer,
    SlowProxy,
    free_port,
    proxy_to,
    run_with_hang_guard,
    start_auth_server,
    write_eval,
)

from vlthinker.config import load_config
from vlthinker.registry.client import RegistryUnavailableError
from vlthinker.state import resolve_stores
from vlthinker.training.common import MLFLOW_RUN_FILE, MLflowRun, default_checkpoint_dir

FAST_RETRIES = {"registry.retries": 3, "registry.backoff_s": 0.01, "registry.backoff_max_s": 0.02}
TINY_SFT = {
    "data.tasks": ["clock"],
    "data.max_difficulty": 1,
    "sft.max_steps": 4,
    "sft.save_steps": 2,
    "sft.logging_steps": 1,
    "sft.batch_size": 4,
}
MLFLOW_HTTP_ENV = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")


def config_for(project: str):
    return load_config(None, {**TINY_SFT, **FAST_RETRIES, "project": project})


class Lines(list):
    """A ``log`` callable that keeps what it was given."""

    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture(scope="module")
def sft_set(tmp_path_factory):
    """A few distilled clock items: an SFT dataset that trains in about a second."""
    from vlthinker.sources.generate import generate_dataset
    from vlthinker.steps.distill import distill

    root = tmp_path_factory.mktemp("sft-faults")
    generate_dataset(root / "items", n=16, seed=1, split="train", tasks=["clock"], max_difficulty=1)
    distill(config_for("x"), root / "items", root / "sft", log=lambda _m: None)
    return root / "sft"


def train(config, sft_set, model, output: Path, uri: str, log):
    from vlthinker.training.sft import train_sft

    return run_with_hang_guard(lambda: train_sft(config, sft_set, model, output, tracking_uri=uri, log=log))


def fresh_process_env(monkeypatch):
    """As in a component process: MLflow's HTTP retry settings unset (restored after the test)."""
    for key in MLFLOW_HTTP_ENV:
        monkeypatch.setenv(key, "unset-by-test")  # records the original value for the undo
        monkeypatch.delenv(key)


# --------------------------------------------------------------------------------------------------
# MLflow down: stop before training, clearly
# --------------------------------------------------------------------------------------------------


def test_training_with_mlflow_down_stops_before_training(sft_set, tiny_model_dir, tmp_path, monkeypatch):
    fresh_process_env(monkeypatch)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    output, log = tmp_path / "out", Lines()
    with pytest.raises(RegistryUnavailableError) as err:
        train(config_for("faults-train-down"), sft_set, tiny_model_dir, output, dead, log)
    message = str(err.value)
    assert f"MLflow at {dead} is unreachable" in message and "failed 3 time(s)" in message
    assert "get experiment faults-train-down" in message
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0", "MLflow's own retries turned down"
    assert [line.split("; ")[-1].split(" in ")[0] for line in log if "retry" in line] == [
        "retry 1/2",
        "retry 2/2",
    ]
    assert not any("examples" in line or "step 1/" in line for line in log), "nothing trained"
    assert not output.exists()
    assert not list(default_checkpoint_dir(output).glob("checkpoint-*"))


def test_evaluation_logging_with_mlflow_down_stops_clearly(tmp_path, monkeypatch):
    from vlthinker.steps.evaluate import log_evaluation

    fresh_process_env(monkeypatch)
    dead = f"http://127.0.0.1:{free_port()}"
    evaluation = write_eval(tmp_path / "eval", [True, False, True])
    with pytest.raises(RegistryUnavailableError) as err:
        run_with_hang_guard(
            lambda: log_evaluation(
                config_for("faults-eval-down"), resolve_stores(tmp_path, dead), evaluation, "m", log=print
            )
        )
    assert f"MLflow at {dead} is unreachable" in str(err.value) and "failed 3 time(s)" in str(err.value)


# --------------------------------------------------------------------------------------------------
# A real mlflow server behind a proxy: lost mid-training, lost answers
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_auth_server(tmp_path_factory, "mlflow-train-faults")
    yield srv
    srv.stop()


@pytest.fixture
def proxy(server, monkeypatch):
    slow = proxy_to(server, monkeypatch, timeout_s=5)
    yield slow
    slow.close()


def break_mlflow_at(monkeypatch, proxy: SlowProxy, step: int, then_raise: BaseException | None = None):
    """From the metric logging of training step ``step`` on, every MLflow answer is lost."""
    original = MLflowRun.log_metrics

    def log_metrics(self, metrics, at):
        if at >= step:
            proxy.drop_response_to, proxy.drops = b"/api/2.0/mlflow/", 10**6
            if then_raise is not None:
                raise then_raise
        return original(self, metrics, at)

    monkeypatch.setattr(MLflowRun, "log_metrics", log_metrics)


def runs_of(uri: str, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def test_mlflow_lost_mid_training_stops_clearly_then_resumes_the_same_run(
    sft_set, tiny_model_dir, tmp_path, proxy, monkeypatch
):
    config = config_for("faults-train-mid")
    output, log = tmp_path / "out", Lines()
    work = default_checkpoint_dir(output)

    # the run is created but its params cannot be logged: stop, and forget that params-less run
    proxy.drop_response_to, proxy.drops = b"/runs/log-batch", 3
    with pytest.raises(RegistryUnavailableError, match="log params of run"):
        train(config, sft_set, tiny_model_dir, output, proxy.uri, log)
    assert not (work / MLFLOW_RUN_FILE).exists() and not any("examples" in line for line in log)

    original = MLflowRun.log_metrics
    proxy.drop_response_to, proxy.drops = b"/runs/create", 1  # the run is created, its answer lost
    break_mlflow_at(monkeypatch, proxy, step=3)  # after checkpoint-2

    with pytest.raises(RegistryUnavailableError) as err:
        train(config, sft_set, tiny_model_dir, output, proxy.uri, log)
    message = str(err.value)
    assert f"MLflow at {proxy.uri} is unreachable" in message and "failed 3 time(s)" in message
    assert "log metrics of run" in message and "(step 3)" in message
    assert any("could not mark run" in line for line in log), "the FAILED mark was tried once"
    assert not output.exists(), "no model without its MLflow record"
    assert (work / "checkpoint-2").is_dir()
    run_id = (work / MLFLOW_RUN_FILE).read_text().strip()

    monkeypatch.setattr(MLflowRun, "log_metrics", original)  # MLflow answers again
    proxy.drops = 0
    log.clear()
    report = train(config, sft_set, tiny_model_dir, output, proxy.uri, log)
    assert any("resuming at step 2" in line for line in log)
    assert report.global_step == 4 and report.mlflow_run_id == run_id
    assert json.loads((output / "training_report.json").read_text())["mlflow_run_id"] == run_id
    runs = {r.info.run_id: r for r in runs_of(proxy.uri, "faults-train-mid")}
    assert len(runs) == 2, "the params-less run and this one: none for the lost creation answer"
    run = runs.pop(run_id)
    assert run.info.status == "FINISHED" and run.data.params["sft.max_steps"] == "4"
    assert [r.info.status for r in runs.values()] == ["FAILED"]
    assert run.data.tags["vlthinker.resumed"] == "true" and run.data.metrics["final/global_step"] == 4


def test_training_error_is_not_masked_when_mlflow_is_down(
    sft_set, tiny_model_dir, tmp_path, proxy, monkeypatch
):
    output, log = tmp_path / "out", Lines()
    break_mlflow_at(monkeypatch, proxy, step=2, then_raise=RuntimeError("injected training failure"))
    with pytest.raises(RuntimeError, match="injected training failure"):
        train(config_for("faults-train-masked"), sft_set, tiny_model_dir, output, proxy.uri, log)
    assert any("could not mark run" in line and proxy.uri in line for line in log)
    assert not output.exists()


def test_lost_answer_to_evaluation_run_creation_logs_one_run(tmp_path, proxy, capsys):
    from vlthinker.steps.evaluate import log_evaluation

    config = config_for("faults-eval-lossy")
    evaluation = write_eval(tmp_path / "eval", [True, False, True, True])
    proxy.drop_response_to, proxy.drops = b"/runs/create", 1
    stores = resolve_stores(tmp_path / "state", proxy.uri)
    run_id = run_with_hang_guard(lambda: log_evaluation(config, stores, evaluation, "m", log=print))
    assert proxy.drops == 0, "the fault happened"
    assert "create evaluation run" in capsys.readouterr().out
    runs = runs_of(proxy.uri, config.registered_model_name)
    assert [(r.info.run_id, r.info.status) for r in runs] == [(run_id, "FINISHED")], "one run, no orphan"


def test_environment_is_restored():
    """The proxy fixture's credentials do not leak into other tests of this worker."""
    assert os.environ.get("MLFLOW_TRACKING_PASSWORD") != MlflowServer.PASSWORD


# --------------------------------------------------------------------------------------------------
# Atomic swap: a failed second rename puts the old directory back
# --------------------------------------------------------------------------------------------------


def test_swap_into_place_restores_the_old_directory_when_the_new_one_cannot_move(tmp_path, monkeypatch):
    from vlthinker import fsutil

    target, staging = tmp_path / "data", tmp_path / ".data.tmp"
    target.mkdir()
    (target / "records.jsonl").write_text("old\n")
    staging.mkdir()
    (staging / "records.jsonl").write_text("new\n")
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(src) == staging:
            raise OSError(28, "No space left on device (injected)", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", failing_replace)
    with pytest.raises(OSError, match="injected"):
        fsutil.swap_into_place(staging, target)
    assert (target / "records.jsonl").read_text() == "old\n", "the old directory is back"
    assert (staging / "records.jsonl").read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.tmp", "data"], "no .old- leftover"

    monkeypatch.undo()
    stale = tmp_path / f".data.old-{os.getpid()}"  # left by a dead process that had our pid
    stale.mkdir()
    fsutil.swap_into_place(staging, target)
    assert (target / "records.jsonl").read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_replace_dir_copies_or_moves_into_place_and_leaves_no_staging_when_the_copy_fails(
    tmp_path, monkeypatch
):
    from vlthinker import fsutil

    source, target = tmp_path / "src", tmp_path / "out" / "model"
    source.mkdir()
    (source / "weights").write_text("new\n")
    target.mkdir(parents=True)
    (target / "weights").write_text("old\n")

    def failing_copytree(src, dst, *args, **kwargs):
        Path(dst).mkdir()
        (Path(dst) / "weights").write_text("ne")  # half-written, then the disk fills
        raise OSError(28, "No space left on device (injected)", str(dst))

    monkeypatch.setattr(fsutil.shutil, "copytree", failing_copytree)
    with pytest.raises(OSError, match="injected"):
        fsutil.replace_dir(source, target)
    assert (target / "weights").read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"], "no staging left"

    monkeypatch.undo()
    assert fsutil.replace_dir(source, target) == target
    assert (target / "weights").read_text() == "new\n" and (source / "weights").exists(), "copied"
    (source / "weights").write_text("moved\n")
    real_replace = os.replace

    def failing_swap(src, dst):
        if Path(src).name.startswith(".model.tmp-"):  # the new directory into place
            raise OSError(28, "No space left on device (injected)", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", failing_swap)
    with pytest.raises(OSError, match="injected"):
        fsutil.replace_dir(source, target, move=True)
    assert (source / "weights").read_text() == "moved\n", "a failed move puts the source back"
    assert (target / "weights").read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]

    monkeypatch.undo()
    fsutil.replace_dir(source, target, move=True)
    assert (target / "weights").read_text() == "moved\n" and not source.exists(), "moved"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]
