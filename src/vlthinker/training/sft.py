"""SFT step: TRL ``SFTTrainer`` on an SFT dataset (conversational prompt/completion + image).

The dataset is what ``distill``/``self-generate`` write: records with ``prompt``, ``completion`` and
``image`` (relative to the dataset dir). Loss is on the completion only. Full fine-tune or LoRA, the
vision tower and projector frozen by default (as in the paper). Each iteration starts from the base
model (paper) or from the previous iteration's model (``sft.init_from``); the output is a standard
Hugging Face model directory with its processor and ``training_report.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlthinker.config import Config
from vlthinker.errors import DatasetError
from vlthinker.records import Record, read_records
from vlthinker.training.common import Log, TrainReport
from vlthinker.training.runner import TrainingJob, load_for_training, run_training


def _extra(record: Record, name: str) -> Any:
    return (record.model_extra or {}).get(name)


def load_sft_dataset(dataset_dir: str | Path):
    """A ``datasets.Dataset`` with ``prompt``, ``completion`` and a lazily decoded ``image`` column."""
    from datasets import Dataset, Image

    root = Path(dataset_dir)
    records = read_records(root)
    missing = [r.id for r in records if not _extra(r, "prompt") or not _extra(r, "completion")]
    if missing or not records:
        raise DatasetError(
            f"{root}: not an SFT dataset ({len(missing)} records without prompt/completion, e.g. "
            f"{missing[:3]}; write one with `vlthinker step distill` or `step self-generate`)"
            if records
            else f"{root}: the SFT dataset is empty"
        )
    rows = {
        "prompt": [_extra(r, "prompt") for r in records],
        "completion": [_extra(r, "completion") for r in records],
        "image": [str(root / r.image) for r in records],
    }
    return Dataset.from_dict(rows).cast_column("image", Image(mode="RGB"))


def init_model(config: Config, base_model: str | Path, previous_model: str | Path | None) -> str:
    """The model an SFT iteration starts from: the base (paper), or the previous model when configured."""
    if config.sft.init_from == "previous" and previous_model is not None:
        return str(previous_model)
    return str(base_model)


def _sft_args(config: Config, base: dict[str, Any]):
    from trl import SFTConfig as TRLSFTConfig

    cfg = config.sft
    return TRLSFTConfig(
        **base,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        completion_only_loss=True,
    )


def train_sft(
    config: Config,
    dataset_dir: str | Path,
    model: str | Path,
    output_dir: str | Path,
    *,
    checkpoint_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    log: Log = print,
) -> TrainReport:
    """Fine-tune ``model`` on the SFT dataset; write the model directory to ``output_dir``."""
    from trl import SFTTrainer

    from vlthinker.training.launch import world_size

    dataset = load_sft_dataset(dataset_dir)
    cfg = config.sft

    def make_trainer(model_obj, processor, args, callbacks, peft):
        return SFTTrainer(
            model=model_obj,
            args=_sft_args(config, args),
            train_dataset=dataset,
            processing_class=processor,
            callbacks=callbacks,
            peft_config=peft,
        )

    job = TrainingJob(
        step="sft",
        config=config,
        section=cfg,
        model_ref=str(model),
        dataset_dir=Path(dataset_dir),
        output_dir=Path(output_dir),
        checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
        tracking_uri=tracking_uri,
        log=log,
    )
    settings = {"sft": cfg.model_dump(mode="json"), "model": config.model.model_dump(mode="json")}
    samples_per_step = cfg.batch_size * cfg.gradient_accumulation_steps * world_size()
    return run_training(job, make_trainer, len(dataset), samples_per_step, settings)


def sft_loss(config: Config, model: str | Path, dataset_dir: str | Path) -> float:
    """Mean completion-only loss of ``model`` on an SFT dataset (held-out loss, no training)."""
    import tempfile

    from trl import SFTTrainer

    from vlthinker.training.common import trainer_args, training_device

    device = training_device()
    job = TrainingJob("sft-eval", config, config.sft, str(model), Path(dataset_dir), Path("."))
    model_obj, processor = load_for_training(job, device)
    model_obj.eval()
    with tempfile.TemporaryDirectory(prefix="vlthinker-sft-eval-") as scratch:
        dataset = load_sft_dataset(dataset_dir)
        trainer = SFTTrainer(
            model=model_obj,
            args=_sft_args(config, trainer_args(config.sft, Path(scratch), device)),
            train_dataset=dataset,  # required by the constructor, never trained on
            eval_dataset=dataset,
            processing_class=processor,
        )
        return float(trainer.evaluate()["eval_loss"])
