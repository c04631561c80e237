"""Training machinery without training: freezing, LoRA targets, checkpoints, launch, selection, config."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from vlthinker.config import Config, LaunchConfig, RLConfig, SelectConfig, load_config
from vlthinker.errors import ConfigError
from vlthinker.records import Record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from vlthinker.model.loader import load_model

    return load_model(tiny_model_dir, device="cpu")


def test_vision_parts_found_in_qwen_layout(tiny):
    from vlthinker.training.common import vision_parts

    assert vision_parts(tiny.model) == ("model.visual", "model.visual.merger")


@pytest.mark.parametrize(("tower", "projector"), [(True, True), (True, False), (False, True), (False, False)])
def test_freeze_vision_tower_and_projector_independently(tiny_model_dir, tower, projector):
    from vlthinker.model.loader import load_model
    from vlthinker.training.common import freeze_vision

    model = load_model(tiny_model_dir, device="cpu").model
    report = freeze_vision(model, tower, projector, log=lambda m: None)
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    merger = [g for n, g in grads.items() if n.startswith("model.visual.merger.")]
    tower_only = [g for n, g in grads.items() if n.startswith("model.visual.") and ".merger." not in n]
    language = [g for n, g in grads.items() if n.startswith("model.language_model.")]
    assert merger and tower_only and language
    assert all(g is (not projector) for g in merger)
    assert all(g is (not tower) for g in tower_only)
    assert all(language)
    assert report.frozen_parameters + report.trainable_parameters == sum(
        p.numel() for p in model.parameters()
    )


def test_lora_targets_skip_frozen_parts_and_the_head(tiny):
    from vlthinker.config import LoraConfig
    from vlthinker.training.common import lora_target_modules

    targets = lora_target_modules(tiny.model, LoraConfig(), ["model.visual"])
    assert targets and not any(t.startswith("model.visual") for t in targets)
    assert "lm_head" not in targets
    only_q = lora_target_modules(tiny.model, LoraConfig(target_modules=["q_proj"]), ["model.visual"])
    assert only_q and all(t.endswith("q_proj") for t in only_q)


def _checkpoint(work: Path, step: int, complete: bool = True) -> Path:
    path = work / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_resume_picks_last_complete_checkpoint_and_drops_torn_ones(tmp_path):
    from vlthinker.training.common import prepare_work_dir

    work = tmp_path / "work"
    assert prepare_work_dir(work, "fp-1", log=lambda m: None) is None
    _checkpoint(work, 2)
    _checkpoint(work, 4)
    _checkpoint(work, 6, complete=False)  # killed while saving
    resume = prepare_work_dir(work, "fp-1", log=lambda m: None)
    assert resume == work / "checkpoint-4"
    assert not (work / "checkpoint-6").exists()


def test_checkpoints_of_other_inputs_are_discarded(tmp_path):
    from vlthinker.training.common import prepare_work_dir

    work = tmp_path / "work"
    prepare_work_dir(work, "fp-1", log=lambda m: None)
    _checkpoint(work, 2)
    assert prepare_work_dir(work, "fp-2", log=lambda m: None) is None
    assert not (work / "checkpoint-2").exists()


def test_launch_command_uses_accelerate_with_config(tmp_path):
    from vlthinker.training.launch import launch_command

    config_file = ROOT / "recipes" / "accelerate" / "deepspeed_zero3.yaml"
    launch = LaunchConfig(num_processes=4, accelerate_config=str(config_file), main_process_port=29511)
    command = launch_command(launch, ["step", "sft", "--input", "d"])
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[command.index("--config_file") + 1] == str(config_file)
    assert command[command.index("--num_processes") + 1] == "4"
    assert command[command.index("--main_process_port") + 1] == "29511"
    assert command[-6:] == ["-m", "vlthinker.cli", "step", "sft", "--input", "d"]
    with pytest.raises(ConfigError, match="not found"):
        launch_command(LaunchConfig(num_processes=2, accelerate_config=str(tmp_path / "nope.yaml")), [])


def test_launch_only_outside_a_launcher(monkeypatch):
    from vlthinker.training.launch import needs_launch

    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert not needs_launch(LaunchConfig(num_processes=1))
    assert needs_launch(LaunchConfig(num_processes=2))
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not needs_launch(LaunchConfig(num_processes=2))


def test_cli_relaunches_step_under_accelerate(monkeypatch, tmp_path):
    """With num_processes > 1 the CLI re-runs the same step through accelerate and returns its code."""
    from typer.testing import CliRunner

    from vlthinker import cli

    calls = []

    def fake_run(command, check=False):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0)

    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    args = [
        "step",
        "rl",
        "--input",
        "in",
        "--model",
        "m",
        "--output",
        "out",
        "--tracking-uri",
        "sqlite:///x.db",
    ]
    result = CliRunner().invoke(cli.app, [*args, "--set", "rl.launch.num_processes=2"])
    assert result.exit_code == 0, result.output
    (command,) = calls
    tail = command[command.index("vlthinker.cli") + 1 :]
    assert tail[:2] == ["step", "rl"] and "--set" in tail and "rl.launch.num_processes=2" in tail
    assert tail[tail.index("--tracking-uri") + 1] == "sqlite:///x.db"


def _record(i: int, task: str = "count") -> Record:
    return Record(
        id=f"r{i}",
        source="synthetic",
        task=task,
        image=f"images/r{i}.png",
        image_sha256="0" * 64,
        question="How many?",
        answer="3",
        split="train",
    )


def test_select_band_is_exclusive_and_curriculum_orders_medium_first():
    from vlthinker.training.select import choose

    records = [_record(i) for i in range(6)]
    rates = {"r0": 0.0, "r1": 1.0, "r2": 0.25, "r3": 0.75, "r4": 0.5, "r5": 0.125}
    kept = choose(records, rates, SelectConfig())
    assert {r.id for r, _ in kept} == {"r2", "r3", "r4", "r5"}
    ordered = choose(records, rates, SelectConfig(curriculum="medium_then_hard", hard_below=0.5))
    stages = [stage for _, stage in ordered]
    assert stages == ["medium", "medium", "hard", "hard"]
    assert {r.id for r, s in ordered if s == "medium"} == {"r3", "r4"}
    narrow = choose(records, rates, SelectConfig(min_pass_rate=0.2, max_pass_rate=0.6, max_items=1))
    assert len(narrow) == 1 and narrow[0][0].id in {"r2", "r4"}


def test_rl_record_carries_pass_rate_and_prompt():
    from vlthinker.training.select import rl_record

    record = rl_record(_record(0), 0.375, 8, "hard")
    extra = record.model_extra or {}
    assert extra["pass_rate"] == 0.375 and extra["pass_k"] == 8 and extra["curriculum_stage"] == "hard"
    assert extra["prompt"][0]["content"][0] == {"type": "image"}


def test_rl_batch_and_rewards_from_config():
    from vlthinker.answers import accuracy_reward, format_reward
    from vlthinker.training.rl import per_device_batch, reward_functions

    assert per_device_batch(RLConfig(prompts_per_step=4, num_generations=8), processes=1) == 32
    assert per_device_batch(RLConfig(prompts_per_step=4, num_generations=8), processes=4) == 8
    with pytest.raises(ConfigError):
        per_device_batch(RLConfig(prompts_per_step=3, num_generations=3), processes=2)
    assert reward_functions(RLConfig()) == ([accuracy_reward], [1.0])
    assert reward_functions(RLConfig(format_weight=0.25)) == ([accuracy_reward, format_reward], [1.0, 0.25])
    with pytest.raises(ValueError):
        RLConfig(accuracy_weight=0, format_weight=0)


def test_paper_recipe_carries_the_paper_training_values():
    config = load_config(ROOT / "recipes" / "qwen2.5-vl-7b.yaml")
    sft, rl = config.sft, config.rl
    assert (sft.learning_rate, sft.epochs, sft.lr_scheduler, sft.warmup_ratio) == (5e-6, 1, "cosine", 0.15)
    assert sft.finetune == "full" and sft.freeze_vision_tower and sft.freeze_projector
    assert sft.init_from == "base" and config.model.max_pixels == 262144
    assert (rl.learning_rate, rl.num_generations, rl.temperature, rl.beta) == (1e-6, 5, 1.0, 0.01)
    assert rl.max_completion_length == 2048 and rl.format_weight == 0
    assert config.select.curriculum == "medium_then_hard"
    for section in (sft, rl):
        assert section.launch.num_processes == 8
        assert (ROOT / section.launch.accelerate_config).is_file()


def test_deepspeed_recipe_points_at_zero3_json():
    import yaml

    accel = yaml.safe_load((ROOT / "recipes" / "accelerate" / "deepspeed_zero3.yaml").read_text())
    assert accel["distributed_type"] == "DEEPSPEED"
    ds = json.loads((ROOT / accel["deepspeed_config"]["deepspeed_config_file"]).read_text())
    assert ds["zero_optimization"]["stage"] == 3


def test_training_defaults_are_laptop_sized():
    config = Config()
    assert config.sft.max_steps and config.rl.max_steps
    assert config.rl.temperature <= 0.7 and config.rl.learning_rate <= 5e-5
    assert config.rl.prompts_per_step * config.rl.num_generations >= 32
    assert config.rl.freeze_vision_tower


class ScriptedBackend:
    """Answers item i correctly in ``correct[i]`` of its k samples (in the strict format)."""

    def __init__(self, records, correct):
        self.records, self.correct, self.calls = records, correct, 0

    def generate(self, prompts, images, params):
        outputs = []
        for _ in prompts:
            record, right = self.records[self.calls], self.correct[self.calls]
            self.calls += 1
            good = f"<think>I read the image.</think><answer>{record.answer}</answer>"
            outputs.append(
                [good] * right + ["<think>guess</think><answer>no idea</answer>"] * (params.n - right)
            )
        return outputs


def test_pass_rates_grade_like_the_reward_and_journal(tmp_path):
    from vlthinker.records import read_records
    from vlthinker.sources.generate import generate_dataset
    from vlthinker.steps.journal import Journal
    from vlthinker.training.select import pass_rates

    generate_dataset(tmp_path / "d", n=5, seed=0, split="train", tasks=["count"], max_difficulty=1)
    records = read_records(tmp_path / "d")
    backend = ScriptedBackend(records, [0, 1, 2, 4, 3])
    journal = Journal(tmp_path / "j.jsonl", "fp")
    sampling = SelectConfig(k=4).sampling
    rates = pass_rates(backend, records, tmp_path / "d", 4, sampling, 2, journal, log=lambda m: None)
    assert [rates[r.id] for r in records] == [0.0, 0.25, 0.5, 1.0, 0.75]
    again = pass_rates(
        ScriptedBackend([], []), records, tmp_path / "d", 4, sampling, 2, journal, log=lambda m: None
    )
    assert again == rates  # everything came from the journal: the backend was never asked


def test_sft_starts_from_the_base_unless_configured_otherwise():
    from vlthinker.training.sft import init_model

    paper = Config()
    assert init_model(paper, "base", "previous") == "base"
    chained = paper.model_copy(update={"sft": paper.sft.model_copy(update={"init_from": "previous"})})
    assert init_model(chained, "base", "previous") == "previous"
    assert init_model(chained, "base", None) == "base"  # iteration 1 has no previous model


def test_precision_is_fp32_on_cpu_and_trainer_args_follow_the_config(tmp_path):
    from vlthinker.training.common import precision_args, trainer_args

    assert precision_args("cpu") == {"use_cpu": True, "bf16": False, "fp16": False}
    sft = Config().sft.model_copy(update={"max_steps": None, "epochs": 2.0, "save_steps": 7})
    args = trainer_args(sft, tmp_path, "cpu")
    assert args["max_steps"] == -1 and args["num_train_epochs"] == 2.0
    assert args["save_strategy"] == "steps" and args["save_steps"] == 7 and args["report_to"] == []
    assert args["activation_checkpointing"] is False
