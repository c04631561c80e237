"""The registry tasks the pipeline's components call (``vlthinker.tasks.registry``), on the real
embedded MLflow store and a local DVC remote:

* ``registry.register_sft``: each iteration's SFT model registered beside its RL candidate, never
  gated; the summary of ``vlthinker run`` lists the SFT versions apart from the gated candidates;
* ``self_generate.model_from: champion``: the gate reports the champion after it, and the model that
  self-generates is that version's files fetched from the registry (the base while there is none);
* the base asked to reason step by step, recorded beside its direct answers as a control that the
  summary shows and the gate does not use.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow_helpers import fake_model, mlflow_template, state_dir_from, write_eval

from vlthinker.config import load_config
from vlthinker.datasets_dvc import dir_md5
from vlthinker.registry.client import RegistryError, open_registry
from vlthinker.registry.status import registry_status
from vlthinker.state import resolve_stores
from vlthinker.tasks import registry as tasks
from vlthinker.tasks.data import make_sources, publish

ROOT = Path(__file__).resolve().parents[1]
N = 60


def config(register_sft: bool):
    return load_config(
        ROOT / "recipes" / "smoke.yaml",
        {"registry.register_sft": register_sft, "registry.retries": 2, "registry.backoff_s": 0.01},
    )


@pytest.fixture
def world(tmp_path, tmp_path_factory):
    """Stores with the base recorded; the datasets an iteration saw, published; models and evaluations."""
    sets = tmp_path / "sets"
    make_sources(config(True), str(sets / "train"), str(sets / "heldout"))
    remote = tmp_path / "remote"
    datasets = {"train": {**publish(str(sets / "train"), str(remote)), "path": str(sets / "train")}}
    for role in ("sft_data", "rl_data"):
        directory = tmp_path / role
        directory.mkdir()
        (directory / "records.jsonl").write_text(f'{{"id": "{role}-0"}}\n')
        datasets[role] = {**publish(str(directory), str(remote)), "path": str(directory)}
    md5 = dir_md5(sets / "heldout")
    evals = {
        name: write_eval(
            tmp_path / f"eval-{name}",
            [i < k for i in range(N)],
            md5=md5,
            style=style,
            dataset_dir=sets / "heldout",
        )
        for name, k, style in (("base", 10, "direct"), ("sft", 30, "reasoning"), ("rl", 40, "reasoning"))
    }
    state = state_dir_from(mlflow_template(tmp_path_factory), tmp_path / "state")
    base_model = fake_model(tmp_path / "base-model")
    tasks.record_base(config(True), str(state), "", str(remote), str(base_model), str(evals["base"]))
    return {
        "state": state,
        "remote": remote,
        "datasets": datasets,
        "evals": evals,
        "sft_model": fake_model(tmp_path / "sft-model"),
        "rl_model": fake_model(tmp_path / "rl-model"),
    }


def gate(world, cfg, iteration: int = 1, sft_model: str | None = "given") -> dict:
    return tasks.gate(
        cfg,
        str(world["state"]),
        "",
        str(world["remote"]),
        "run-1",
        iteration,
        str(world["rl_model"]),
        str(world["evals"]["rl"]),
        world["datasets"],
        control_eval_dir=str(world["evals"]["sft"]),
        sft_model_dir=str(world["sft_model"]) if sft_model == "given" else sft_model,
    )


def versions(world, cfg) -> dict[str, dict]:
    status = registry_status(open_registry(cfg, resolve_stores(world["state"])))
    return status, {v["stage"]: v for v in status["versions"]}


def test_the_sft_model_is_registered_with_its_own_lineage_and_never_gated(world):
    cfg = config(True)
    result = gate(world, cfg)
    status, by_stage = versions(world, cfg)
    assert sorted(by_stage) == ["rl", "sft"] and len(status["versions"]) == 2
    sft, rl = by_stage["sft"], by_stage["rl"]
    assert result["version"] == rl["version"] and sft["version"] < rl["version"], "SFT first, then RL"
    assert sft["decision"] is None and sft["aliases"] == [], "the SFT model is not gated"
    assert rl["decision"] == "promote" and status["champion"] == rl["version"]
    assert sft["iteration"] == 1 and sft["metrics"]["heldout_accuracy"] == pytest.approx(0.5)
    datasets = world["datasets"]
    assert sft["tags"]["vlt.dataset.train"] == datasets["train"]["dvc_md5"]
    assert sft["tags"]["vlt.dataset.sft_data"] == datasets["sft_data"]["dvc_md5"]
    assert "vlt.dataset.rl_data" not in sft["tags"], "the SFT model never saw the RL data"
    assert rl["tags"]["vlt.dataset.rl_data"] == datasets["rl_data"]["dvc_md5"]
    assert rl["tags"]["vlt.sft_version"] == str(sft["version"])

    # re-running the gate (a retried or cached-off step) registers nothing new
    assert gate(world, cfg)["version"] == rl["version"]
    assert len(versions(world, cfg)[0]["versions"]) == 2


def test_off_by_default_and_a_missing_sft_model_registers_nothing(world, tmp_path):
    assert config(False).registry.register_sft is False
    assert load_config(None).registry.register_sft is False
    cfg = config(True)
    with pytest.raises(RegistryError, match="register_sft") as error:
        gate(world, cfg, sft_model=str(tmp_path / "no-such-model"))
    assert "no-such-model" in str(error.value) and "nothing registered" in str(error.value)
    assert versions(world, cfg)[0]["versions"] == []

    gate(world, config(False))
    _, by_stage = versions(world, cfg)
    assert sorted(by_stage) == ["rl"] and "vlt.sft_version" not in by_stage["rl"]["tags"]


def test_the_run_summary_lists_sft_versions_apart_from_the_gated_candidates(world):
    from pipelines.summary import format_summary, summary_rows

    cfg = config(True)
    gate(world, cfg)
    status, by_stage = versions(world, cfg)
    rows = summary_rows(status, "run-1")
    assert [row["version"] for row in rows] == [by_stage["rl"]["version"]]
    text = format_summary(status, "run-1", 12.0, "sqlite:///x.db")
    sft = by_stage["sft"]["version"]
    assert (
        f"SFT models registered, not gated (registry.register_sft): vlthinker-smoke/{sft} (iteration 1)"
        in text
    )


def test_the_bases_step_by_step_control_is_recorded_beside_its_direct_answers(world, tmp_path):
    from pipelines.summary import format_summary
    from vlthinker.registry.status import format_status

    cfg = config(False)
    heldout = tmp_path / "sets" / "heldout"
    reasoning = write_eval(
        tmp_path / "eval-base-reasoning",
        [i < 21 for i in range(N)],
        md5=dir_md5(heldout),
        dataset_dir=heldout,
    )
    args = (cfg, str(world["state"]), "", str(world["remote"]), str(tmp_path / "base-model"))
    tasks.record_base(*args, str(world["evals"]["base"]), str(reasoning))
    status, _ = versions(world, cfg)
    assert status["base"]["metrics"]["heldout_accuracy"] == pytest.approx(10 / N), "the gate's reference"
    assert status["base"]["reasoning_control"]["heldout_accuracy"] == pytest.approx(21 / N)
    run = open_registry(cfg, resolve_stores(world["state"])).client.get_run(status["base"]["run_id"])
    assert run.data.metrics["reasoning_control_heldout_accuracy"] == pytest.approx(21 / N)
    assert run.data.metrics["heldout_accuracy"] == pytest.approx(10 / N), "the run's own evaluation"
    text = format_summary(status, "run-1", 12.0, "sqlite:///x.db")
    assert "held-out accuracy 16.7% answering directly" in text
    assert "35.0% asked to reason step by step (a control)" in text
    assert "step by step 35.0% (control)" in format_status(status)

    gate(world, cfg)  # the gate compares with the direct answers: 40 vs 10 right
    assert versions(world, cfg)[0]["versions"][0]["decision"] == "promote"

    # a control scored on other items is refused, and the record stays as it was
    other = write_eval(tmp_path / "eval-other", [True] * (N - 1), md5=dir_md5(heldout), dataset_dir=heldout)
    with pytest.raises(RegistryError, match="a control must use the same items") as error:
        tasks.record_base(*args, str(world["evals"]["base"]), str(other))
    assert str(other) in str(error.value)
    assert versions(world, cfg)[0]["base"]["reasoning_control"]["heldout_accuracy"] == pytest.approx(21 / N)


def test_the_champion_after_the_gate_is_the_model_that_self_generates(world, tmp_path):
    from vlthinker.tasks.registry import generator_model

    cfg = config(False)
    args = (cfg, str(world["state"]), "", str(world["remote"]))
    base = str(tmp_path / "base-model")
    assert generator_model(*args, 0, base, str(tmp_path / "scratch0")) == (
        base,
        "the base model (no champion yet)",
    )

    result = gate(world, cfg)
    assert result["decision"] == "promote" and result["champion"] == result["version"]
    assert gate(world, cfg)["champion"] == result["version"], "an already gated version reports it too"
    model_dir, label = generator_model(*args, result["champion"], base, str(tmp_path / "scratch1"))
    assert label == f"the champion vlthinker-smoke/{result['version']}"
    registered = sorted(p.name for p in world["rl_model"].iterdir())
    assert sorted(p.name for p in Path(model_dir).iterdir()) == registered
    for name in registered:
        assert (Path(model_dir) / name).read_bytes() == (world["rl_model"] / name).read_bytes()

    with pytest.raises(RegistryError, match="no such model version"):
        generator_model(*args, 99, base, str(tmp_path / "scratch2"))


def test_the_parent_is_the_model_that_wrote_the_traces(world):
    from vlthinker.tasks.registry import parent_version

    cfg = config(False)
    registry = open_registry(cfg, resolve_stores(world["state"]))
    first = gate(world, cfg)["version"]
    datasets = world["datasets"]
    assert parent_version(registry, "run-1", 1, datasets) is None, "iteration 1: the teacher's traces"
    assert parent_version(registry, "run-1", 2, datasets) == first, "the previous iteration's RL model"
    assert parent_version(registry, "other-run", 2, datasets) is None
    from_champion = {**datasets, "sft_data": {**datasets["sft_data"], "generator_version": 7.0}}
    assert parent_version(registry, "run-1", 2, from_champion) == 7
    from_base = {**datasets, "sft_data": {**datasets["sft_data"], "generator_version": 0}}
    assert parent_version(registry, "run-1", 2, from_base) is None
