"""RL step: TRL ``GRPOTrainer`` on an RL dataset, rewards from ``vlthinker.answers``.

Data: the records ``select`` writes (source fields + conversational ``prompt`` + ``pass_rate``); a
record without ``prompt`` gets the reasoning prompt built from its question. TRL receives ``prompt``,
``image`` (decoded lazily) and the grading columns (``answer``, ``choices``, ``answer_type``,
``precision``), which reach the reward functions as keyword arguments.

Rewards: ``accuracy_reward`` (strict format AND correct answer; exactly one think/answer block) times
``rl.accuracy_weight``, plus ``format_reward`` times ``rl.format_weight`` when that weight is > 0.
One optimizer step sees ``rl.prompts_per_step`` prompts x ``rl.num_generations`` completions. A
curriculum-ordered dataset (``curriculum_stage`` set by ``select``) is read in order, not shuffled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlthinker.config import Config, RLConfig
from vlthinker.errors import ConfigError, DatasetError
from vlthinker.prompts import reasoning_question, user_message
from vlthinker.records import Record, read_records
from vlthinker.training.common import Log, TrainReport
from vlthinker.training.runner import TrainingJob, run_training

GRADING_COLUMNS = ("answer_type", "precision")


def rl_prompt(record: Record) -> list[dict[str, Any]]:
    prompt = (record.model_extra or {}).get("prompt")
    return prompt if prompt else user_message(reasoning_question(record.question))


def load_rl_dataset(dataset_dir: str | Path):
    """``datasets.Dataset`` with ``prompt``, ``image`` (lazy), ``answer``, ``choices`` (+ grading columns)."""
    from datasets import Dataset, Image

    root = Path(dataset_dir)
    records = read_records(root)
    if not records:
        raise DatasetError(f"{root}: the RL dataset is empty")
    rows: dict[str, list[Any]] = {
        "prompt": [rl_prompt(r) for r in records],
        "image": [str(root / r.image) for r in records],
        "answer": [r.answer for r in records],
        "choices": [json.dumps(r.choices) if r.choices else None for r in records],
    }
    for column in GRADING_COLUMNS:
        values = [(r.model_extra or {}).get(column) for r in records]
        if any(v is not None for v in values):
            rows[column] = [None if v is None else str(v) for v in values]
    curriculum = any((r.model_extra or {}).get("curriculum_stage") for r in records)
    return Dataset.from_dict(rows).cast_column("image", Image(mode="RGB")), curriculum


def drop_long_prompts(dataset, processor, max_prompt_length: int | None, log: Log):
    """Drop items whose prompt (chat template + image tokens) is longer than ``max_prompt_length``."""
    if max_prompt_length is None:
        return dataset

    def short_enough(example) -> bool:
        text = processor.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=False)
        ids = processor(text=[text], images=[example["image"]], return_tensors="pt")["input_ids"]
        return ids.shape[1] <= max_prompt_length

    kept = dataset.filter(short_enough)
    if len(kept) < len(dataset):
        log(f"rl: dropped {len(dataset) - len(kept)} items with prompts over {max_prompt_length} tokens")
    if len(kept) == 0:
        raise DatasetError(f"rl: every prompt is longer than rl.max_prompt_length={max_prompt_length}")
    return kept


def reward_functions(cfg: RLConfig) -> tuple[list[Any], list[float]]:
    from vlthinker.answers import accuracy_reward, format_reward

    pairs = [(accuracy_reward, cfg.accuracy_weight), (format_reward, cfg.format_weight)]
    kept = [(fn, weight) for fn, weight in pairs if weight > 0]
    return [fn for fn, _ in kept], [weight for _, weight in kept]


def per_device_batch(cfg: RLConfig, processes: int) -> int:
    """Completions per device and micro-step so that one optimizer step holds prompts x generations."""
    completions = cfg.prompts_per_step * cfg.num_generations
    shards = processes * cfg.gradient_accumulation_steps
    if completions % shards:
        raise ConfigError(
            f"rl: prompts_per_step x num_generations ({completions}) does not divide over "
            f"{processes} processes x {cfg.gradient_accumulation_steps} accumulation steps"
        )
    return completions // shards


def grpo_args(cfg: RLConfig, base: dict[str, Any], processes: int, shuffle: bool):
    from trl import GRPOConfig

    vllm: dict[str, Any] = {}
    if cfg.use_vllm:
        vllm = {
            "use_vllm": True,
            "vllm_mode": cfg.vllm_mode,
            "vllm_gpu_memory_utilization": cfg.vllm_gpu_memory_utilization,
            "vllm_tensor_parallel_size": cfg.vllm_tensor_parallel_size,
        }
        if cfg.vllm_server_base_url:
            vllm["vllm_server_base_url"] = cfg.vllm_server_base_url
    return GRPOConfig(
        **base,
        per_device_train_batch_size=per_device_batch(cfg, processes),
        num_generations=cfg.num_generations,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_completion_length=cfg.max_completion_length,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        num_iterations=cfg.num_iterations,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        reward_weights=reward_functions(cfg)[1],
        shuffle_dataset=shuffle,
        log_completions=False,
        **vllm,
    )


def train_rl(
    config: Config,
    dataset_dir: str | Path,
    model: str | Path,
    output_dir: str | Path,
    *,
    checkpoint_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    log: Log = print,
) -> TrainReport:
    """GRPO on the RL dataset starting from ``model`` (the SFT model); write the model directory."""
    from trl import GRPOTrainer

    from vlthinker.training.launch import world_size

    cfg = config.rl
    dataset, curriculum = load_rl_dataset(dataset_dir)
    processes = world_size()
    funcs, _ = reward_functions(cfg)
    if cfg.max_prompt_length is not None:
        from vlthinker.model.loader import load_processor

        m = config.model
        processor = load_processor(
            model, trust_remote_code=m.trust_remote_code, min_pixels=m.min_pixels, max_pixels=m.max_pixels
        )
        dataset = drop_long_prompts(dataset, processor, cfg.max_prompt_length, log)

    def make_trainer(model_obj, processor, args, callbacks, peft):
        return GRPOTrainer(
            model=model_obj,
            reward_funcs=funcs,
            args=grpo_args(cfg, args, processes, shuffle=not curriculum),
            train_dataset=dataset,
            processing_class=processor,
            callbacks=callbacks,
            peft_config=peft,
        )

    job = TrainingJob(
        step="rl",
        config=config,
        section=cfg,
        model_ref=str(model),
        dataset_dir=Path(dataset_dir),
        output_dir=Path(output_dir),
        checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
        tracking_uri=tracking_uri,
        log=log,
    )
    settings = {"rl": cfg.model_dump(mode="json"), "model": config.model.model_dump(mode="json")}
    return run_training(job, make_trainer, len(dataset), cfg.prompts_per_step, settings)
