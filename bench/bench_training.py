"""Benchmark the training steps against bare TRL: SFT samples/s and GRPO steps/s, as ratios.

Builds the offline tiny VLM and a distilled SFT dataset (synthetic items, offline teacher), then in
one process runs, on the same model, data and settings:

* SFT:  ``vlthinker.training.sft.train_sft`` (checkpoints, MLflow, freezing, final atomic save)
        vs a bare ``trl.SFTTrainer`` script (no checkpoints, no tracking);
* GRPO: ``vlthinker.training.rl.train_rl`` vs a bare ``trl.GRPOTrainer`` with the same reward.

Each side is timed around ``trainer.train()`` only (model loading and the final save excluded) and
the bare run goes first, then ours, then both again; the better of the two timings of each side is
kept. Prints samples/s, steps/s and the ratio ours / bare (1.0 = no overhead).

    python bench/bench_training.py           # SFT 40 steps, GRPO 8 steps
    python bench/bench_training.py --quick   # SFT 10 steps, GRPO 3 steps (smoke run)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vlthinker.config import Config, load_config


def prepare(root: Path, n: int) -> tuple[Path, Path]:
    """A tiny model and a distilled SFT dataset (also the RL dataset: it has prompts and answers)."""
    from vlthinker.model.tiny import build_tiny
    from vlthinker.sources.generate import generate_dataset
    from vlthinker.steps.distill import distill

    model = build_tiny(root / "model", seed=0)
    generate_dataset(root / "source", n=n, seed=0, split="train", tasks=["clock", "table"], max_difficulty=1)
    distill(Config(), root / "source", root / "sft", log=lambda m: None)
    return model, root / "sft"


def bare_trainer_args(config: Config, section: str, out: Path) -> dict:
    """The trainer settings our step uses, written out by hand as a bare script would."""
    cfg = getattr(config, section)
    return {
        "output_dir": str(out),
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup_ratio,
        "max_steps": cfg.max_steps,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "no",
        "report_to": [],
        "activation_checkpointing": False,
        "use_cpu": True,
        "bf16": False,  # fp32 on CPU as our steps train (TRL would default to bf16 autocast)
        "fp16": False,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "disable_tqdm": True,
    }


def bare_model(model_dir: Path):
    from transformers import AutoModelForImageTextToText

    from vlthinker.model.loader import load_processor

    model = AutoModelForImageTextToText.from_pretrained(str(model_dir), use_safetensors=True)
    for name, parameter in model.named_parameters():
        if name.startswith("model.visual."):
            parameter.requires_grad_(False)
    return model, load_processor(model_dir)


def bare_rows(dataset_dir: Path, rl: bool):
    from datasets import Dataset
    from PIL import Image

    from vlthinker.records import read_records

    rows = []
    for record in read_records(dataset_dir):
        image = Image.open(dataset_dir / record.image).convert("RGB")
        extra = record.model_extra or {}
        if rl:
            rows.append({"prompt": extra["prompt"], "image": image, "answer": record.answer})
        else:
            rows.append({"prompt": extra["prompt"], "completion": extra["completion"], "image": image})
    return Dataset.from_list(rows)


def bare_sft(config: Config, model_dir: Path, data: Path, out: Path) -> float:
    from trl import SFTConfig, SFTTrainer

    model, processor = bare_model(model_dir)
    args = SFTConfig(
        **bare_trainer_args(config, "sft", out),
        per_device_train_batch_size=config.sft.batch_size,
        max_length=config.sft.max_length,
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=bare_rows(data, rl=False), processing_class=processor
    )
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def bare_grpo(config: Config, model_dir: Path, data: Path, out: Path) -> float:
    from trl import GRPOConfig, GRPOTrainer

    from vlthinker.answers import accuracy_reward

    rl = config.rl
    model, processor = bare_model(model_dir)
    args = GRPOConfig(
        **bare_trainer_args(config, "rl", out),
        per_device_train_batch_size=rl.prompts_per_step * rl.num_generations,
        num_generations=rl.num_generations,
        temperature=rl.temperature,
        max_completion_length=rl.max_completion_length,
        beta=rl.beta,
        loss_type=rl.loss_type,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[accuracy_reward],
        args=args,
        train_dataset=bare_rows(data, rl=True),
        processing_class=processor,
    )
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def ours(step: str, config: Config, model_dir: Path, data: Path, out: Path, tracking_uri: str) -> float:
    from vlthinker.training.rl import train_rl
    from vlthinker.training.sft import train_sft

    train = train_sft if step == "sft" else train_rl
    report = train(config, data, model_dir, out, tracking_uri=tracking_uri, log=lambda m: None)
    return report.train_seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="SFT 10 steps, GRPO 3 steps")
    parser.add_argument("--items", type=int, default=200, help="synthetic items in the dataset")
    args = parser.parse_args(argv)
    sft_steps, rl_steps = (10, 3) if args.quick else (40, 8)
    config = load_config(
        None,
        {
            "sft.max_steps": sft_steps,
            "sft.save_steps": max(sft_steps // 4, 1),
            "sft.logging_steps": max(sft_steps // 4, 1),
            "rl.max_steps": rl_steps,
            "rl.save_steps": max(rl_steps // 2, 1),
            "rl.logging_steps": 1,
            "rl.max_completion_length": 64,
        },
    )
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(tmp)
        model_dir, data = prepare(root, args.items)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        timings: dict[str, list[float]] = {"sft-bare": [], "sft-ours": [], "rl-bare": [], "rl-ours": []}
        for round_ in range(2):
            for step, bare in (("sft", bare_sft), ("rl", bare_grpo)):
                timings[f"{step}-bare"].append(bare(config, model_dir, data, root / f"bare-{step}-{round_}"))
                timings[f"{step}-ours"].append(
                    ours(step, config, model_dir, data, root / f"ours-{step}-{round_}", uri)
                )
    sft_samples = sft_steps * config.sft.batch_size
    sft_bare, sft_ours = sft_samples / min(timings["sft-bare"]), sft_samples / min(timings["sft-ours"])
    rl_bare, rl_ours = rl_steps / min(timings["rl-bare"]), rl_steps / min(timings["rl-ours"])
    print(
        f"SFT  ({sft_steps} steps x {config.sft.batch_size}): ours {sft_ours:7.2f} samples/s   bare TRL {sft_bare:7.2f} samples/s   ratio ours/bare {sft_ours / sft_bare:.2f}"
    )
    print(
        f"GRPO ({rl_steps} steps x {config.rl.prompts_per_step}x{config.rl.num_generations}): ours {rl_ours:7.3f} steps/s     bare TRL {rl_bare:7.3f} steps/s     ratio ours/bare {rl_ours / rl_bare:.2f}"
    )
    print("timings (s): " + ", ".join(f"{k}={', '.join(f'{t:.1f}' for t in v)}" for k, v in timings.items()))


if __name__ == "__main__":
    main()
