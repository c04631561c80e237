"""Machinery shared by the SFT and RL steps: device and precision, freezing, LoRA, checkpoints, MLflow.

* Precision: bf16 on GPU (when supported), fp32 on CPU; gradient checkpointing only when configured.
* Freezing: the vision tower and the projector are found by their usual module names
  (``visual``/``vision_tower``/... and ``merger``/``multi_modal_projector``/...), so real hub models
  and the tiny model are treated alike.
* Checkpoints live in a work directory beside the output (``.<output>.checkpoints``), tagged with a
  fingerprint of the step's inputs and settings; a re-run with the same fingerprint resumes from the
  last *complete* checkpoint (``trainer_state.json`` is written last), a different one starts over.
  The final model directory is written once, atomically, at the end.
* MLflow: one run per step execution under the tracking URI passed in (never read from the
  environment); a resumed step continues the same run. Throughput (samples/s, tokens/s) is derived
  from the trainer's own counters between two log events.
* MLflow outages: every call of :class:`MLflowRun` follows the registry's retry policy
  (``config.registry.retries``/``backoff_s``/``backoff_max_s``/``request_timeout_s``, through
  :func:`vlthinker.registry.client.call_with_retries`; MLflow's own HTTP retries are turned down to 0
  as there), then raises :class:`~vlthinker.registry.client.RegistryUnavailableError` naming the
  tracking URI and the call. Deliberately, a step does not train without its MLflow record:

  - opening the run (experiment, run, params, tags) happens before the model is loaded, so an
    unreachable MLflow stops the step before any training;
  - a metric-logging failure in the middle of training is retried the same way and then stops the
    step (metrics are not dropped silently); checkpoints and the recorded run id stay in the work
    dir, so the re-run resumes from the last checkpoint into the same MLflow run;
  - when training fails, the run is marked FAILED with one best-effort attempt (:meth:`MLflowRun.abandon`)
    that never replaces the original error.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlthinker.config import LoraConfig, TrainCommonConfig
from vlthinker.errors import VLThinkerError

Log = Callable[[str], None]

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
FINGERPRINT_FILE = "fingerprint.json"
MLFLOW_RUN_FILE = "mlflow_run_id"
REPORT_FILE = "training_report.json"

VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model", "vision_encoder")
PROJECTOR_NAMES = ("merger", "multi_modal_projector", "mm_projector", "connector", "visual_projection")


class TrainingError(VLThinkerError):
    """A training step cannot run as configured (bad dataset, model without the parts to freeze...)."""


# --------------------------------------------------------------------------------------------------
# Device and trainer arguments
# --------------------------------------------------------------------------------------------------


def distributed_state():
    """accelerate's process state; without a GPU it is initialised for CPU (gloo) so that a
    multi-process launch on CPU machines is seen as one (``PartialState()`` alone would not)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    return distributed_state().is_main_process


def training_device() -> str:
    """This process's device (``cuda:<local rank>`` under a multi-GPU launch, else cuda or cpu)."""
    return str(distributed_state().device)


def precision_args(device: str) -> dict[str, Any]:
    """bf16 mixed precision on a GPU that supports it, fp32 on CPU."""
    import torch

    on_gpu = device.startswith("cuda")
    bf16 = on_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return {"use_cpu": not on_gpu, "bf16": bf16, "fp16": False}


def trainer_args(cfg: TrainCommonConfig, work_dir: Path, device: str) -> dict[str, Any]:
    """TrainingArguments fields common to TRL's SFTConfig and GRPOConfig, from our config section."""
    return {
        "output_dir": str(work_dir),
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "max_steps": cfg.max_steps if cfg.max_steps is not None else -1,
        "num_train_epochs": cfg.epochs,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "report_to": [],
        "activation_checkpointing": cfg.gradient_checkpointing,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        **precision_args(device),
    }


# --------------------------------------------------------------------------------------------------
# Freezing and LoRA
# --------------------------------------------------------------------------------------------------


@dataclass
class FreezeReport:
    vision_tower: str | None
    projector: str | None
    frozen_parameters: int
    trainable_parameters: int


def vision_parts(model) -> tuple[str | None, str | None]:
    """Module paths of the vision tower and of the projector (None when the model has none)."""
    names = [name for name, _ in model.named_modules() if name]

    def shortest(candidates: Iterable[str], inside: str | None = None) -> str | None:
        hits = [
            n
            for n in names
            if n.rsplit(".", 1)[-1] in candidates and (inside is None or n.startswith(inside + "."))
        ]
        return min(hits, key=lambda n: (n.count("."), n)) if hits else None

    tower = shortest(VISION_TOWER_NAMES)
    projector = (shortest(PROJECTOR_NAMES, inside=tower) if tower else None) or shortest(
        [n for n in PROJECTOR_NAMES if n != "merger"]
    )
    return tower, projector


def _under(name: str, prefix: str | None) -> bool:
    return prefix is not None and (name == prefix or name.startswith(prefix + "."))


def vision_parameters(model) -> tuple[list, list]:
    """(parameters of the vision tower and projector, all other parameters)."""
    tower_path, projector_path = vision_parts(model)
    vision, other = [], []
    for name, parameter in model.named_parameters():
        module = name.removeprefix("base_model.model.")
        in_vision = _under(module, tower_path) or _under(module, projector_path)
        (vision if in_vision else other).append(parameter)
    return vision, other


def freeze_vision(model, vision_tower: bool, projector: bool, log: Log = print) -> FreezeReport:
    """Set ``requires_grad=False`` on the vision tower (projector excluded) and/or the projector."""
    tower_path, projector_path = vision_parts(model)
    for wanted, path, what in (
        (vision_tower, tower_path, "vision tower"),
        (projector, projector_path, "projector"),
    ):
        if wanted and path is None:
            log(f"training: {type(model).__name__} has no {what} to freeze (module names: {what} not found)")
    for name, parameter in model.named_parameters():
        module = name.removeprefix("base_model.model.")
        in_projector = _under(module, projector_path)
        in_tower = _under(module, tower_path) and not in_projector
        if (vision_tower and in_tower) or (projector and in_projector):
            parameter.requires_grad_(False)
    return FreezeReport(tower_path, projector_path, *parameter_counts(model))


def parameter_counts(model) -> tuple[int, int]:
    """(frozen, trainable) parameter counts."""
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return frozen, trainable


def lora_target_modules(model, lora: LoraConfig, frozen_prefixes: Iterable[str | None]) -> list[str]:
    """Full names of the linear layers LoRA adapts: outside the frozen parts, never the output head."""
    import torch

    wanted = None if lora.target_modules == "all-linear" else set(lora.target_modules)
    prefixes = [p for p in frozen_prefixes if p]
    output = model.get_output_embeddings()
    targets = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is output:
            continue
        if any(_under(name, prefix) for prefix in prefixes):
            continue
        if wanted is None or name.rsplit(".", 1)[-1] in wanted:
            targets.append(name)
    if not targets:
        raise TrainingError(f"lora: no linear layer matches target_modules={lora.target_modules!r}")
    return targets


def peft_config(model, lora: LoraConfig, frozen_prefixes: Iterable[str | None]):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_target_modules(model, lora, frozen_prefixes),
        task_type="CAUSAL_LM",
    )


def frozen_prefixes(report: FreezeReport, cfg: TrainCommonConfig) -> list[str | None]:
    return [
        report.vision_tower if cfg.freeze_vision_tower else None,
        report.projector if cfg.freeze_projector else None,
    ]


# --------------------------------------------------------------------------------------------------
# Checkpoints and resume
# --------------------------------------------------------------------------------------------------


def default_checkpoint_dir(output_dir: str | Path) -> Path:
    output = Path(output_dir)
    return output.parent / f".{output.name}.checkpoints"


def fingerprint(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def dataset_digest(dataset_dir: str | Path) -> str:
    from vlthinker.records import RECORDS_FILE

    return hashlib.sha256((Path(dataset_dir) / RECORDS_FILE).read_bytes()).hexdigest()


def _checkpoint_step(path: Path) -> int | None:
    match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def _complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(work_dir: str | Path) -> Path | None:
    """The newest checkpoint whose trainer state was written (the Trainer writes it last)."""
    work = Path(work_dir)
    if not work.is_dir():
        return None
    steps = sorted(
        ((step, p) for p in work.iterdir() if (step := _checkpoint_step(p)) is not None), reverse=True
    )
    return next((p for _, p in steps if _complete(p)), None)


def prepare_work_dir(work_dir: str | Path, fingerprint_value: str, log: Log = print) -> Path | None:
    """Make the checkpoint dir ready; return the checkpoint to resume from (None = start fresh).

    A work dir written for other inputs or settings is wiped; checkpoints newer than the last complete
    one (torn by a crash mid-save) are removed so the Trainer never sees them.
    """
    work = Path(work_dir)
    marker = work / FINGERPRINT_FILE
    if work.exists():
        try:
            recorded = json.loads(marker.read_text()).get("fingerprint")
        except (OSError, ValueError):
            recorded = None
        if recorded != fingerprint_value:
            log(f"training: {work} holds checkpoints of other inputs or settings; starting over")
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": fingerprint_value}) + "\n")
    resume = last_complete_checkpoint(work)
    resume_step = _checkpoint_step(resume) if resume else None
    for path in work.iterdir():
        step = _checkpoint_step(path)
        if step is not None and (resume_step is None or step > resume_step):
            log(f"training: removing incomplete checkpoint {path.name}")
            shutil.rmtree(path, ignore_errors=True)
    if resume is not None:
        log(f"training: resuming from {resume}")
    return resume


# --------------------------------------------------------------------------------------------------
# Reports, progress and MLflow
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainReport:
    """What a training step did; written as ``training_report.json`` into the model directory."""

    step: str
    model: str
    dataset: str
    dataset_sha256: str
    global_step: int
    max_steps: int
    resumed_from_step: int | None
    train_loss: float | None
    train_seconds: float
    samples_per_second: float
    steps_per_second: float
    tokens_per_second: float | None
    trainable_parameters: int
    frozen_parameters: int
    finetune: str
    mlflow_run_id: str | None
    n_examples: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Throughput:
    """Samples/s, steps/s and tokens/s between two log events (from the trainer's counters)."""

    def __init__(self, samples_per_step: int):
        self.samples_per_step = samples_per_step
        self.last: tuple[float, int, float | None] | None = None

    def reset(self, step: int) -> None:
        self.last = (time.monotonic(), step, None)

    def update(self, step: int, num_tokens: float | None) -> dict[str, float]:
        now = time.monotonic()
        metrics: dict[str, float] = {}
        if self.last is not None:
            then, last_step, last_tokens = self.last
            elapsed = max(now - then, 1e-9)
            if step > last_step:
                metrics["throughput/steps_per_second"] = (step - last_step) / elapsed
                metrics["throughput/samples_per_second"] = (
                    (step - last_step) * self.samples_per_step / elapsed
                )
            if num_tokens is not None and last_tokens is not None and num_tokens > last_tokens:
                metrics["throughput/tokens_per_second"] = (num_tokens - last_tokens) / elapsed
        self.last = (now, step, num_tokens)
        return metrics


def numeric_metrics(logs: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in logs.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[key] = number
    return out


class MLflowRun:
    """One MLflow run for one step execution; resumes the run recorded in the work dir.

    Every call is retried per ``retry`` (default :class:`~vlthinker.registry.client.RetryPolicy`);
    after the last attempt a ``RegistryUnavailableError`` names the tracking URI and the call.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        run_file: Path,
        retry: Any = None,
        log: Log = print,
        sleep: Callable[[float], None] = time.sleep,
    ):
        from vlthinker.registry.client import RetryPolicy, _configure_mlflow_http

        self.tracking_uri = tracking_uri
        self.retry = retry or RetryPolicy()
        self.log = log
        self.sleep = sleep
        _configure_mlflow_http(self.retry)  # before the client: MLflow's own retries off, our timeout
        from mlflow.tracking import MlflowClient

        from vlthinker.registry.client import RegistryError, create_run_once
        from vlthinker.state import initialize_embedded_store

        initialize_embedded_store(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        recorded = run_file.read_text().strip() if run_file.is_file() else ""
        self.resumed = False
        if recorded:
            try:
                self.call(f"get run {recorded}", self.client.get_run, recorded)
                self.run_id, self.resumed = recorded, True
            except RegistryError:  # unreachable or refused: not a reason to start another run
                raise
            except Exception:  # the run was deleted or the store changed: start a new one
                recorded = ""
        if not recorded:
            experiment_id = self._experiment_id(experiment, tracking_uri)
            token = uuid.uuid4().hex  # one per run: a retried creation whose answer was lost is found
            run = self.call(
                f"create run {run_name} in experiment {experiment}",
                create_run_once,
                self.client,
                experiment_id,
                token,
                run_name=run_name,
            )
            self.run_id = run.info.run_id
            run_file.write_text(self.run_id + "\n")

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with the retry policy; ``what`` names the call in the error."""
        from vlthinker.registry.client import call_with_retries

        return call_with_retries(
            self.tracking_uri,
            what,
            lambda: fn(*args, **kwargs),
            self.retry,
            self.log,
            self.sleep,
            label="mlflow",
        )

    def _experiment_id(self, name: str, tracking_uri: str) -> str:
        """The experiment's id; created on first use, with an embedded (SQLite) store's artifacts in
        ``mlartifacts/<name>`` beside the database, as ``vlthinker.state`` lays the state dir out."""
        from vlthinker.registry.client import RegistryError
        from vlthinker.state import embedded_database

        found = self.call(f"get experiment {name}", self.client.get_experiment_by_name, name)
        if found is not None:
            return found.experiment_id
        database = embedded_database(tracking_uri)
        location = str(database.parent / "mlartifacts" / name) if database is not None else None
        try:
            return self.call(
                f"create experiment {name}", self.client.create_experiment, name, artifact_location=location
            )
        except RegistryError:
            raise
        except Exception:  # created meanwhile by another step
            found = self.call(f"get experiment {name}", self.client.get_experiment_by_name, name)
            if found is None:
                raise
            return found.experiment_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        flat = _flatten(params)
        batch = [Param(k, str(v)[:6000]) for k, v in sorted(flat.items())]
        for start in range(0, len(batch), 100):
            self.call(
                f"log params of run {self.run_id}",
                self.client.log_batch,
                self.run_id,
                params=batch[start : start + 100],
            )

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(_metric_key(k), v, stamp, step) for k, v in metrics.items()]
        if batch:
            self.call(
                f"log metrics of run {self.run_id} (step {step})",
                self.client.log_batch,
                self.run_id,
                metrics=batch,
            )

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(key, str(value)) for key, value in tags.items()]
        if batch:
            self.call(f"set tags of run {self.run_id}", self.client.log_batch, self.run_id, tags=batch)

    def finish(self, status: str = "FINISHED") -> None:
        self.call(
            f"end run {self.run_id} as {status}", self.client.set_terminated, self.run_id, status=status
        )

    def abandon(self, status: str = "FAILED") -> None:
        """Mark the run ``status`` while another error is on its way out: one attempt, never raises."""
        from vlthinker.registry.client import _first_line

        try:
            self.client.set_terminated(self.run_id, status=status)
        except Exception as exc:
            first = _first_line(exc)
            self.log(
                f"mlflow: could not mark run {self.run_id} {status} at {self.tracking_uri} ({first}); "
                "it stays RUNNING until the step is re-run"
            )


def _metric_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)


def _flatten(payload: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def progress_callback(
    label: str,
    log: Log,
    samples_per_step: int,
    mlflow_run: MLflowRun | None = None,
    keys: tuple[str, ...] = ("loss", "learning_rate"),
):
    """A TrainerCallback that prints one line per log event and sends every metric to MLflow.

    Only the main process prints and logs; throughput metrics are added to what the trainer logs.
    """
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self):
            self.throughput = Throughput(samples_per_step)
            self.start = time.monotonic()
            self.first_step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.monotonic()
            self.first_step = state.global_step
            self.throughput.reset(state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            metrics = numeric_metrics(logs)
            speed = self.throughput.update(state.global_step, metrics.get("num_tokens"))
            if mlflow_run is not None:
                mlflow_run.log_metrics(
                    {**{f"train/{k}": v for k, v in metrics.items()}, **speed}, state.global_step
                )
            if not any(k in metrics for k in keys):
                return
            total = state.max_steps
            done = state.global_step - self.first_step
            elapsed = time.monotonic() - self.start
            eta = elapsed / max(done, 1) * max(total - state.global_step, 0)
            shown = " ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)
            rate = speed.get("throughput/samples_per_second")
            log(
                f"{label}: step {state.global_step}/{total} {shown}"
                + (f" ({rate:.1f} samples/s)" if rate else "")
                + f" (elapsed {elapsed:.0f}s, ETA {eta:.0f}s)"
            )

    return ProgressCallback()


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_report(model_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(model_dir) / REPORT_FILE).read_text())
