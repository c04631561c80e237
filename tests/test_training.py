"""SFT, RL data selection and GRPO on the tiny VLM, end to end at test size: mechanics, resume, logs.

One small world is built once per module: synthetic clock/table items (short traces keep CPU
training cheap), distilled by the offline teacher, and an SFT model trained on them from the
untrained tiny VLM. These tests check what holds at this size:

* SFT lowers the held-out SFT loss (by more than half) and writes a standard model directory;
* the SFT and GRPO data paths pair each trace/prompt with its own image (the shipped base tells);
* selection records pass rates and keeps only the configured band; GRPO runs, logs its metrics;
* a step killed with SIGKILL after a checkpoint and re-run resumes and ends with the same number of
  optimizer steps as an uninterrupted run.

The directional learning claims (SFT beats the base on held-out accuracy, GRPO raises the reward on
its training items) need a base that sees, i.e. minutes of pretraining: they live in
``test_training_learning.py`` (opt-in, see there).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlthinker.config import Config, load_config

WORLD = {
    "data.tasks": ["clock", "table"],
    "data.max_difficulty": 1,
    "sft.max_steps": 40,
    "sft.learning_rate": 1e-3,  # a random tiny model (the default suits the shipped base)
    "sft.save_steps": 1000,
    "sft.logging_steps": 5,
    "select.k": 2,
    "select.sampling.max_new_tokens": 48,
    "rl.max_completion_length": 48,
    "rl.prompts_per_step": 2,
    "rl.num_generations": 4,
    "rl.max_steps": 3,
    "rl.logging_steps": 1,
    "rl.save_steps": 1000,
}
N_TRAIN, N_HELDOUT, N_RL_CANDIDATES = 200, 40, 16


def quiet(message: str) -> None:
    pass


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(None, WORLD)


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def world(tmp_path_factory, config):
    """Source items, held-out items and their distilled SFT datasets."""
    from vlthinker.sources.generate import generate_dataset
    from vlthinker.steps.distill import distill

    root = tmp_path_factory.mktemp("world")
    tasks = config.data.tasks
    generate_dataset(root / "train", n=N_TRAIN, seed=1, split="train", tasks=tasks, max_difficulty=1)
    generate_dataset(root / "heldout", n=N_HELDOUT, seed=0, split="heldout", tasks=tasks, max_difficulty=1)
    distill(config, root / "train", root / "sft-train", log=quiet)
    distill(config, root / "heldout", root / "sft-heldout", log=quiet)
    return root


@pytest.fixture(scope="module")
def shipped_base_dir() -> Path:
    """The base shipped with the package (it reads the images, unlike the untrained tiny model)."""
    from vlthinker.model.pretrain import cache_key, shipped_base

    shipped = shipped_base(cache_key(Config()))
    assert shipped is not None, "the default recipe's base ships with the package (test_prebuilt_base)"
    return shipped[0]


def with_neighbours_images(dataset: Path, output: Path) -> Path:
    """A copy of ``dataset`` in which every record's image file holds the next record's image."""
    from vlthinker.records import read_records

    shutil.copytree(dataset, output)
    paths = [output / r.image for r in read_records(output)]
    contents = [p.read_bytes() for p in paths]
    for path, content in zip(paths, contents[1:] + contents[:1], strict=True):
        path.write_bytes(content)
    return output


@pytest.fixture(scope="module")
def sft_model(world, tiny_model_dir, config, tracking_uri):
    from vlthinker.training.sft import train_sft

    output = world / "sft-model"
    report = train_sft(
        config, world / "sft-train", tiny_model_dir, output, tracking_uri=tracking_uri, log=quiet
    )
    return output, report


# --------------------------------------------------------------------------------------------------
# SFT
# --------------------------------------------------------------------------------------------------


def test_sft_lowers_the_heldout_loss(world, tiny_model_dir, sft_model, config):
    from vlthinker.training.sft import sft_loss

    model_dir, report = sft_model
    before = sft_loss(config, tiny_model_dir, world / "sft-heldout")
    after = sft_loss(config, model_dir, world / "sft-heldout")
    print(f"held-out SFT loss {before:.3f} -> {after:.3f}")
    assert after < 0.5 * before
    curve = report.extra["loss_curve"]
    assert curve[-1][1] < 0.5 * curve[0][1]


def test_sft_batches_pair_each_trace_with_its_own_image(world, config, shipped_base_dir, tmp_path):
    """The shipped base reads the images: its loss on the SFT traces is clearly lower with each
    record's own image than with its neighbour's. A trace paired with the wrong image, or with none,
    in the SFT data path (dataset loading, TRL's collator) would make the two losses alike."""
    from vlthinker.model.pretrain import CLEAN_TEACHER
    from vlthinker.steps.distill import distill
    from vlthinker.training.sft import sft_loss

    # the teacher's clean style (the base's pretraining chains): its filler and slips would bury the
    # few tokens that the image decides under tokens that nothing decides
    plain = {f"distill.offline.{knob}": value for knob, value in CLEAN_TEACHER.items()}
    own_images = tmp_path / "sft-own"
    distill(load_config(None, {**WORLD, **plain}), world / "heldout", own_images, log=quiet)
    shifted = with_neighbours_images(own_images, tmp_path / "sft-shifted")
    own = sft_loss(config, shipped_base_dir, own_images)
    neighbours = sft_loss(config, shipped_base_dir, shifted)
    print(f"shipped base's SFT loss: own images {own:.3f}, the neighbour's {neighbours:.3f}")
    assert neighbours > 1.5 * own


def test_sft_writes_a_standard_model_dir_and_logs_to_mlflow(sft_model, tracking_uri):
    from mlflow.tracking import MlflowClient

    from vlthinker.model.loader import load_model
    from vlthinker.training.common import read_report

    model_dir, report = sft_model
    for name in ("model.safetensors", "config.json", "tokenizer.json", "preprocessor_config.json"):
        assert (model_dir / name).is_file(), name
    assert not list(model_dir.glob("*.bin"))  # no pickles
    assert not (model_dir.parent / f".{model_dir.name}.checkpoints").exists()
    load_model(model_dir, device="cpu")
    saved = read_report(model_dir)
    assert saved["global_step"] == report.global_step == 40
    assert saved["frozen_parameters"] > 0 and saved["samples_per_second"] > 0
    client = MlflowClient(tracking_uri)
    run = client.get_run(report.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.params["sft.learning_rate"] == "0.001"
    for key in ("train/loss", "train/learning_rate", "throughput/samples_per_second"):
        assert key in run.data.metrics, key
    assert "throughput/tokens_per_second" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 40 // 5
    location = client.get_experiment(run.info.experiment_id).artifact_location
    assert "mlartifacts" in location and str(Path.cwd() / "mlruns") not in location  # beside the store


def test_lora_sft_merges_adapters_into_a_plain_model(world, tiny_model_dir, config, tmp_path):
    from vlthinker.model.loader import load_model
    from vlthinker.training.sft import train_sft

    sft = config.sft.model_copy(update={"finetune": "lora", "max_steps": 3, "batch_size": 2})
    report = train_sft(
        config.model_copy(update={"sft": sft}),
        world / "sft-train",
        tiny_model_dir,
        tmp_path / "lora",
        log=quiet,
    )
    assert report.global_step == 3 and report.finetune == "lora"
    assert report.trainable_parameters < report.frozen_parameters
    assert not list((tmp_path / "lora").glob("adapter_*"))
    loaded = load_model(tmp_path / "lora", device="cpu")
    assert not any("lora_" in name for name, _ in loaded.model.named_parameters())


# --------------------------------------------------------------------------------------------------
# Selection and GRPO
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def candidates(world):
    from vlthinker.records import read_records, write_dataset

    path = world / "rl-candidates"
    records = read_records(world / "train")[:N_RL_CANDIDATES]
    write_dataset(path, [(r, (world / "train" / r.image).read_bytes()) for r in records])
    return path


def test_select_records_pass_rates_under_the_sft_model(candidates, sft_model, config, world):
    from vlthinker.records import read_records
    from vlthinker.training.select import select_rl_data

    stats = select_rl_data(config, sft_model[0], candidates, world / "rl", log=quiet)
    records = read_records(world / "rl")
    assert stats["items"]["candidates"] == N_RL_CANDIDATES
    assert sum(stats["pass_rate_histogram"].values()) == N_RL_CANDIDATES
    assert (
        stats["items"]["kept"]
        == len(records)
        == N_RL_CANDIDATES - stats["items"]["all_wrong"] - stats["items"]["all_right"]
    )
    for record in records:
        extra = record.model_extra or {}
        assert 0 < extra["pass_rate"] < 1 and extra["pass_k"] == 2
        assert extra["prompt"][0]["content"][0] == {"type": "image"}


def test_select_candidates_are_a_seeded_sample_in_input_order(candidates):
    from vlthinker.config import SelectConfig
    from vlthinker.records import read_records
    from vlthinker.training.select import candidates as pick

    records = read_records(candidates)
    chosen = pick(records, SelectConfig(max_candidates=6))
    ids = [r.id for r in records]
    assert len(chosen) == 6 and len({r.id for r in chosen}) == 6
    assert [ids.index(r.id) for r in chosen] == sorted(ids.index(r.id) for r in chosen)
    assert [r.id for r in pick(records, SelectConfig(max_candidates=6))] == [r.id for r in chosen]
    other_seed = pick(records, SelectConfig(max_candidates=6, seed=1))
    assert [r.id for r in other_seed] != [r.id for r in chosen]
    assert pick(records, SelectConfig(max_candidates=None)) == records
    assert pick(records, SelectConfig(max_candidates=len(records) + 5)) == records


def test_select_measures_only_max_candidates_items(candidates, sft_model, config, world):
    from vlthinker.records import read_records
    from vlthinker.training.select import candidates as pick
    from vlthinker.training.select import select_rl_data

    capped = config.model_copy(update={"select": config.select.model_copy(update={"max_candidates": 6})})
    messages: list[str] = []
    stats = select_rl_data(capped, sft_model[0], candidates, world / "rl-capped", log=messages.append)
    assert stats["items"]["inputs"] == N_RL_CANDIDATES and stats["items"]["candidates"] == 6
    assert sum(stats["pass_rate_histogram"].values()) == 6
    measured = {r.id for r in pick(read_records(candidates), capped.select)}
    assert {r.id for r in read_records(world / "rl-capped")} <= measured
    assert any(f"on 6 of {N_RL_CANDIDATES} items (select.max_candidates)" in m for m in messages)


def test_select_tells_when_grpo_will_revisit_kept_items():
    from vlthinker.config import Config
    from vlthinker.training.select import revisit_note

    config = Config()  # GRPO draws 30 x 4 = 120 prompts
    assert "GRPO will use 120 prompts" in revisit_note(100, True, config)
    assert "the 100 kept items" in revisit_note(100, True, config)
    assert revisit_note(120, True, config) is None  # enough items
    assert revisit_note(100, False, config) is None  # every item measured: nothing to raise
    assert revisit_note(0, True, config) is None  # nothing kept: the RL suite reports that
    by_epochs = config.model_copy(update={"rl": config.rl.model_copy(update={"max_steps": None})})
    assert revisit_note(10, True, by_epochs) is None


def test_grpo_rewards_each_completion_against_its_own_item(world, config, shipped_base_dir, tmp_path):
    """The shipped base, sampled through GRPO (learning rate ~0, so both runs sample the same model),
    earns a clearly higher accuracy reward with each prompt's own image than with its neighbour's.
    A prompt, image and answer out of step in the RL data path would make the rewards alike."""
    from vlthinker.training.rl import train_rl

    rl = config.rl.model_copy(
        update={"learning_rate": 1e-12, "max_steps": 4, "prompts_per_step": 4, "max_completion_length": 128}
    )
    sampling = config.model_copy(update={"rl": rl})
    shifted = with_neighbours_images(world / "heldout", tmp_path / "shifted")

    def mean_reward(dataset):
        report = train_rl(sampling, dataset, shipped_base_dir, tmp_path / f"rl-{dataset.name}", log=quiet)
        rewards = [entry["reward"] for entry in report.extra["log_history"] if "reward" in entry]
        assert len(rewards) == rl.max_steps
        return sum(rewards) / len(rewards)

    own, neighbours = mean_reward(world / "heldout"), mean_reward(shifted)
    print(f"shipped base's GRPO accuracy reward: own images {own:.3f}, the neighbour's {neighbours:.3f}")
    assert own > neighbours + 0.2


def test_grpo_trains_resumes_and_logs_its_metrics(candidates, sft_model, config, tracking_uri, world):
    from mlflow.tracking import MlflowClient

    from vlthinker.model.loader import load_model
    from vlthinker.training.common import read_report
    from vlthinker.training.rl import train_rl

    rl = config.rl.model_copy(update={"save_steps": 2, "keep_checkpoints": True, "format_weight": 0.5})
    rl_config = config.model_copy(update={"rl": rl})
    output, work = world / "rl-model", world / ".rl-model.checkpoints"
    report = train_rl(rl_config, candidates, sft_model[0], output, tracking_uri=tracking_uri, log=quiet)
    assert report.global_step == 3 and read_report(output)["step"] == "rl"
    load_model(output, device="cpu")
    run = MlflowClient(tracking_uri).get_run(report.mlflow_run_id)
    for key in (
        "train/reward",
        "train/reward_std",
        "train/rewards/accuracy_reward/mean",
        "train/rewards/format_reward/mean",
        "train/kl",
        "train/completions/mean_length",
        "train/clip_ratio/region_mean",
        "throughput/steps_per_second",
    ):
        assert key in run.data.metrics, key

    # As if interrupted after the step-2 checkpoint: the re-run resumes there and ends at step 3.
    shutil.rmtree(work / "checkpoint-3")
    shutil.rmtree(output)
    resumed = train_rl(rl_config, candidates, sft_model[0], output, tracking_uri=tracking_uri, log=quiet)
    assert resumed.resumed_from_step == 2 and resumed.global_step == 3
    assert resumed.mlflow_run_id == report.mlflow_run_id  # the same MLflow run continues


# --------------------------------------------------------------------------------------------------
# Kill and resume
# --------------------------------------------------------------------------------------------------


def _wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if process.poll() is not None:
            pytest.fail(f"the step exited ({process.returncode}) before {path} was written")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} not written within {timeout_s}s")
        time.sleep(0.05)


def test_killed_sft_step_resumes_to_the_same_step_count(world, tiny_model_dir, tracking_uri, tmp_path):
    """SIGKILL after a checkpoint, re-run: it resumes and ends at the uninterrupted step count."""
    from vlthinker.training.common import read_report
    from vlthinker.training.sft import train_sft

    overrides = {
        "sft.max_steps": 40,
        "sft.save_steps": 4,
        "sft.batch_size": 2,
        "sft.logging_steps": 2,
        "sft.learning_rate": 1e-3,  # weights that move measurably from the random tiny model's
    }
    output = tmp_path / "sft"
    command = [
        sys.executable, "-m", "vlthinker.cli", "step", "sft",
        "--input", str(world / "sft-train"), "--model", str(tiny_model_dir), "--output", str(output),
        "--state-dir", str(tmp_path / "state"), "--tracking-uri", tracking_uri,
    ]  # fmt: skip
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    work = tmp_path / ".sft.checkpoints"
    _wait_for(work / "checkpoint-8" / "trainer_state.json", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not output.exists()
    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = read_report(output)
    assert resumed["resumed_from_step"] >= 8
    assert not work.exists()

    straight = train_sft(
        load_config(None, overrides), world / "sft-train", tiny_model_dir, tmp_path / "straight", log=quiet
    )
    assert resumed["global_step"] == straight.global_step == 40
    logged = {step for step, _ in resumed["extra"]["loss_curve"]}
    assert {2, 40} <= logged  # the resumed trainer state carries the losses logged before the kill
    # The resumed run continued from the checkpoint's weights (not from the initial ones):
    assert max_weight_difference(output, tmp_path / "straight") < 1e-4
    assert max_weight_difference(output, tiny_model_dir) > 1e-2


def max_weight_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert left.keys() == right.keys()
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in left)


def test_two_cpu_processes_train_one_model(world, tiny_model_dir, tracking_uri, tmp_path):
    """Nothing assumes one device: two processes (torchrun, gloo on CPU) train and write one model."""
    from vlthinker.training.common import read_report

    output = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "vlthinker.cli", "step", "sft",
        "--input", str(world / "sft-train"), "--model", str(tiny_model_dir), "--output", str(output),
        "--tracking-uri", tracking_uri,
        "--set", "sft.max_steps=4", "--set", "sft.batch_size=2", "--set", "sft.save_steps=2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = read_report(output)
    assert report["extra"]["processes"] == 2 and report["global_step"] == 4
    assert result.stdout.count('"global_step"') == 1  # the main process alone reports
