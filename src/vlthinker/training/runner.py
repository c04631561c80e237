"""The skeleton every training step follows; SFT and RL differ only in the trainer they build.

1. checkpoint dir (fingerprinted by model, dataset, settings) → the checkpoint to resume from;
2. one MLflow run (resumed when the checkpoint dir recorded one), params logged once — before the
   model is loaded, so an unreachable MLflow stops the step first (bounded retries, then an error
   naming the tracking URI; see :mod:`vlthinker.training.common`);
3. load the model (bf16 on GPU, fp32 on CPU), freeze the vision tower / projector, LoRA config;
4. ``trainer.train(resume_from_checkpoint=...)`` with a progress + MLflow callback;
5. the final model (LoRA merged) + processor + ``training_report.json`` written into
   ``<work>/final`` and renamed into the output in one step; the checkpoint dir is then removed.

If anything after step 2 fails, the MLflow run is marked FAILED in one best-effort attempt and the
original error is raised (an MLflow outage at that moment never replaces it).

Every process of a multi-process launch runs this; only the main process prints, logs and writes.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlthinker.config import Config, TrainCommonConfig
from vlthinker.training.common import (
    MLFLOW_RUN_FILE,
    REPORT_FILE,
    FreezeReport,
    Log,
    MLflowRun,
    TrainReport,
    dataset_digest,
    default_checkpoint_dir,
    distributed_state,
    fingerprint,
    freeze_vision,
    frozen_prefixes,
    is_main_process,
    last_complete_checkpoint,
    numeric_metrics,
    parameter_counts,
    peft_config,
    prepare_work_dir,
    progress_callback,
    trainer_args,
    training_device,
    write_json,
)

# (model, processor, trainer-argument fields, callbacks, peft config or None) -> a transformers Trainer
TrainerFactory = Callable[[Any, Any, dict[str, Any], list[Any], Any], Any]


@dataclass
class TrainingJob:
    """One execution of a training step: what to train, on what, into where."""

    step: str
    config: Config
    section: TrainCommonConfig
    model_ref: str
    dataset_dir: Path
    output_dir: Path
    checkpoint_dir: Path | None = None
    tracking_uri: str | None = None
    log: Log = print

    @property
    def work_dir(self) -> Path:
        return self.checkpoint_dir or default_checkpoint_dir(self.output_dir)


def processor_for_trainer(processor):
    """The Trainer saves the processor with every checkpoint: route that through our shim-aware saver."""
    from vlthinker.model.loader import save_processor

    if getattr(processor, "video_processor", "absent") is None:
        processor.save_pretrained = lambda save_directory, *args, **kwargs: save_processor(
            processor, save_directory
        )
    return processor


def checkpoints_in_model_layout(model) -> None:
    """Write checkpoints with the model's own parameter names (transformers#43701).

    ``save_pretrained`` converts Qwen2.5-VL (and other VLM) names back to the hub layout
    (``visual.*``, ``model.layers.*``), but ``Trainer`` resumes with a plain ``load_state_dict`` that
    does not convert them back: every key misses and a resumed run silently keeps its initial weights.
    Checkpoints therefore keep the model's layout; the final model is saved in the standard one.
    """
    model.save_pretrained = functools.partial(type(model).save_pretrained, model, save_original_format=False)


def standard_layout(model) -> None:
    model.__dict__.pop("save_pretrained", None)


def load_for_training(job: TrainingJob, device: str):
    from vlthinker.model.loader import load_model

    cfg = job.config.model
    loaded = load_model(
        job.model_ref,
        trust_remote_code=cfg.trust_remote_code,
        dtype=cfg.torch_dtype,
        device=device,
        min_pixels=cfg.min_pixels,
        max_pixels=cfg.max_pixels,
    )
    loaded.model.train()
    return loaded.model, processor_for_trainer(loaded.processor)


def _open_mlflow(job: TrainingJob, resumed: bool, params: dict[str, Any]) -> MLflowRun | None:
    if job.tracking_uri is None:
        return None
    from vlthinker.registry.client import retry_policy

    run = MLflowRun(
        job.tracking_uri,
        job.config.project,
        job.step,
        job.work_dir / MLFLOW_RUN_FILE,
        retry=retry_policy(job.config),
        log=job.log,
    )
    try:
        if not run.resumed:
            run.log_params(params)
            run.set_tags(
                {
                    "vlthinker.step": job.step,
                    "vlthinker.model": job.model_ref,
                    "vlthinker.dataset": job.dataset_dir,
                }
            )
        elif resumed:
            run.set_tags({"vlthinker.resumed": "true"})
    except BaseException:
        if not run.resumed:  # a run without its params: the re-run starts a complete one instead
            run.abandon("FAILED")
            (job.work_dir / MLFLOW_RUN_FILE).unlink(missing_ok=True)
        raise
    return run


def run_training(
    job: TrainingJob,
    make_trainer: TrainerFactory,
    n_examples: int,
    samples_per_step: int,
    settings: dict[str, Any],
) -> TrainReport:
    """Train with checkpoints and resume; write the final model atomically; return the report.

    ``settings``: everything besides model and dataset that determines the result (the checkpoint
    fingerprint and the MLflow params).
    """
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our progress lines replace the shard-writing bars
    section = job.section
    log = job.log if is_main_process() else _silent
    dataset_sha = dataset_digest(job.dataset_dir)
    key = fingerprint(
        {"step": job.step, "model": job.model_ref, "dataset": dataset_sha, "settings": settings}
    )
    device = training_device()
    resume = prepare_work_dir(job.work_dir, key, log) if is_main_process() else None
    resume = _broadcast_resume(job.work_dir, resume)
    mlflow_run = _open_mlflow(job, resume is not None, settings) if is_main_process() else None
    try:
        report = _train(
            job, make_trainer, n_examples, samples_per_step, device, resume, mlflow_run, dataset_sha
        )
        if mlflow_run is not None:
            mlflow_run.finish("FINISHED")
    except BaseException:
        if mlflow_run is not None:
            mlflow_run.abandon("FAILED")  # one attempt, never raises: the original error goes on
        raise
    if is_main_process() and not section.keep_checkpoints:
        shutil.rmtree(job.work_dir, ignore_errors=True)
    log(
        f"{job.step}: {report.global_step} steps in {report.train_seconds:.0f}s "
        f"({report.samples_per_second:.1f} samples/s); model written to {job.output_dir}"
    )
    return report


def _train(
    job, make_trainer, n_examples, samples_per_step, device, resume, mlflow_run, dataset_sha
) -> TrainReport:
    """Load, freeze, train and save the final model (steps 3–5); MLflow metrics go to ``mlflow_run``."""
    from transformers import PrinterCallback

    section = job.section
    log = job.log if is_main_process() else _silent
    model, processor = load_for_training(job, device)
    freeze = freeze_vision(model, section.freeze_vision_tower, section.freeze_projector, log)
    checkpoints_in_model_layout(model)
    peft = (
        peft_config(model, section.lora, frozen_prefixes(freeze, section))
        if section.finetune == "lora"
        else None
    )
    args = trainer_args(section, job.work_dir, device)
    callback = progress_callback(
        job.step,
        log,
        samples_per_step,
        mlflow_run,
        keys=("loss", "reward", "learning_rate") if job.step == "rl" else ("loss", "learning_rate"),
    )
    trainer = make_trainer(model, processor, args, [callback], peft)
    trainer.remove_callback(PrinterCallback)  # our callback prints one line per log event
    freeze.frozen_parameters, freeze.trainable_parameters = parameter_counts(trainer.model)
    resumed_step = int(resume.name.rsplit("-", 1)[-1]) if resume else None
    log(
        f"{job.step}: {n_examples} examples, {freeze.trainable_parameters:,} trainable / "
        f"{freeze.frozen_parameters:,} frozen parameters ({section.finetune}), device {device}"
        + (f", resuming at step {resumed_step}" if resume else "")
    )
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.monotonic() - started
    report = _report(job, trainer, result, seconds, n_examples, samples_per_step, resumed_step, freeze)
    report.dataset_sha256, report.mlflow_run_id = dataset_sha, mlflow_run.run_id if mlflow_run else None
    if mlflow_run is not None:  # before the final model is in place: a failure here leaves no output
        mlflow_run.log_metrics(
            {f"final/{k}": v for k, v in numeric_metrics(report.to_json()).items()}, report.global_step
        )
    _save_final(job, trainer, model, processor, report)
    return report


def _silent(message: str) -> None:
    """Processes other than the main one train quietly."""


def _broadcast_resume(work_dir: Path, resume: Path | None) -> Path | None:
    """After the main process tidied the work dir, every process resumes from the same checkpoint."""
    state = distributed_state()
    if state.num_processes == 1:
        return resume
    state.wait_for_everyone()
    return last_complete_checkpoint(work_dir)


def _report(job, trainer, result, seconds, n_examples, samples_per_step, resumed_step, freeze: FreezeReport):
    state = trainer.state
    steps_run = state.global_step - (resumed_step or 0)
    losses = [(e["step"], e["loss"]) for e in state.log_history if "loss" in e]
    tokens = next((e["num_tokens"] for e in reversed(state.log_history) if "num_tokens" in e), None)
    return TrainReport(
        step=job.step,
        model=job.model_ref,
        dataset=str(job.dataset_dir),
        dataset_sha256="",
        global_step=state.global_step,
        max_steps=state.max_steps,
        resumed_from_step=resumed_step,
        train_loss=float(result.training_loss) if result.training_loss is not None else None,
        train_seconds=seconds,
        samples_per_second=steps_run * samples_per_step / max(seconds, 1e-9),
        steps_per_second=steps_run / max(seconds, 1e-9),
        tokens_per_second=(float(tokens) / max(seconds, 1e-9)) if tokens and not resumed_step else None,
        trainable_parameters=freeze.trainable_parameters,
        frozen_parameters=freeze.frozen_parameters,
        finetune=job.section.finetune,
        mlflow_run_id=None,
        n_examples=n_examples,
        extra={
            "loss_curve": losses,
            "log_history": state.log_history,
            "processes": distributed_state().num_processes,
        },
    )


def _save_final(job: TrainingJob, trainer, raw_model, processor, report: TrainReport) -> None:
    """Write model + processor + report into ``<work>/final``, then rename it into the output."""
    from vlthinker.fsutil import replace_dir
    from vlthinker.model.loader import save_processor

    final = job.work_dir / "final"
    if is_main_process() and final.exists():
        shutil.rmtree(final)  # left by a run killed while saving
    trainer.accelerator.wait_for_everyone()
    standard_layout(raw_model)
    model = trainer.model
    if job.section.finetune == "lora":
        merged = trainer.accelerator.unwrap_model(model).merge_and_unload()
        if is_main_process():
            merged.save_pretrained(final, safe_serialization=True)
    else:
        trainer.save_model(str(final))  # every process calls it: ZeRO-3 gathers the shards here
    if is_main_process():
        save_processor(processor, final)
        for stale in final.glob("training_args.bin"):
            stale.unlink()
        write_json(final / REPORT_FILE, report.to_json())
        replace_dir(final, job.output_dir, move=True)
    trainer.accelerator.wait_for_everyone()
