"""The ``vlthinker`` command line: thin wrappers that parse arguments and call the library.

Every command prints what it does and where it writes; errors the user can fix are printed as one
clear message with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from vlthinker.cli_registry import attach as attach_registry_commands
from vlthinker.config import Config, load_config, parse_override
from vlthinker.errors import VLThinkerError

app = typer.Typer(
    help="vlthinker: iterative SFT + GRPO self-improvement of vision-language models (OpenVLThinker).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
model_app = typer.Typer(help="Build, pretrain and inspect models.", no_args_is_help=True)
data_app = typer.Typer(help="Generate, import and inspect datasets.", no_args_is_help=True)
step_app = typer.Typer(
    help="Run one pipeline step on dataset directories (used by DVC stages and KFP components).",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")
app.add_typer(step_app, name="step")
app.add_typer(data_app, name="data")

DEFAULT_CONFIG = Path("params.yaml")
DEFAULT_STATE_DIR = Path(".vlthinker")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config (params.yaml or a file from recipes/). Default: ./params.yaml if present, "
        "else the built-in laptop defaults.",
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one config key, e.g. --set pretrain.steps=100 (repeatable)."),
]


def log(message: str) -> None:
    typer.echo(message, err=True)


def resolve_config(config: Path | None, overrides: list[str] | None = None) -> Config:
    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    parsed = dict(parse_override(item) for item in overrides or [])
    loaded = load_config(path, parsed)
    log(f"config: {path if path else 'built-in defaults'}" + (f" with overrides {parsed}" if parsed else ""))
    return loaded


@model_app.command("build-tiny")
def build_tiny_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write the model into.")],
    seed: Annotated[int, typer.Option(help="Weight-initialisation seed; same seed, same weights.")] = 0,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Build the offline tiny Qwen2.5-VL model with random weights.

    Writes a standard Hugging Face directory into OUTPUT: config.json, model.safetensors, the
    tokenizer (byte-level BPE trained offline), preprocessor_config.json and chat_template.jinja.
    AutoProcessor / AutoModelForImageTextToText load it. Nothing is downloaded.
    """
    from vlthinker.model.tiny import build_tiny

    cfg = resolve_config(config, overrides)
    path = build_tiny(output, seed=seed, spec=cfg.model.tiny, image_size=cfg.data.image_size)
    info = json.loads((path / "vlthinker_model.json").read_text())
    typer.echo(f"tiny VLM ({info['parameters']:,} parameters, seed {seed}) written to {path}")


@model_app.command("pretrain-base")
def pretrain_base_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write the base model into.")],
    config: ConfigOption = None,
    overrides: SetOption = None,
    state_dir: Annotated[
        Path, typer.Option(help="State directory; its cache/base/ holds base models by content key.")
    ] = DEFAULT_STATE_DIR,
    force: Annotated[bool, typer.Option(help="Retrain even when a cached base model exists.")] = False,
    ship: Annotated[
        bool,
        typer.Option(
            help="Maintainers: also store the base in the package (vlthinker/model/prebuilt/<cache key>, "
            "replacing the one shipped) so runs with this exact recipe take it instead of pretraining."
        ),
    ] = False,
) -> None:
    """Pretrain the tiny VLM into the base model the first iteration has to beat.

    Trains on synthetic (image -> exact caption) pairs, direct answers (\\boxed{X}, no reasoning),
    step-by-step solutions (from the image, and from its exact description) and arithmetic drills,
    then reports caption loss, held-out direct-answer accuracy per task family against chance, and
    the share of right equations on held-out arithmetic drills.
    Writes the model directory (with base_report.json) into OUTPUT; the result is cached by content
    (config + seed) under STATE_DIR/cache/base/, so a second call with the same config is instant.
    The package ships the default recipe's base (pretrain.use_prebuilt), which such a call takes
    instead of pretraining; --force pretrains it here. After changing the default recipe, maintainers
    rebuild the shipped base with --force --ship.
    """
    from vlthinker.model.pretrain import format_report, pretrain_base

    cfg = resolve_config(config, overrides)
    if cfg.model.base != "tiny":
        raise VLThinkerError(
            f"model.base is {cfg.model.base!r}: pretrain-base builds the offline tiny model only; "
            "a hub or local base model is used as it is"
        )
    report, cached = pretrain_base(cfg, output, cache_dir=state_dir / "cache", log=log, force=force)
    typer.echo(format_report(report))
    typer.echo(f"base model {'(cached) ' if cached else ''}written to {output}")
    if ship:
        shipped = ship_pretrained(output, report, config, overrides, trained_here=not cached)
        typer.echo(f"shipped with the package: {shipped}")


def ship_pretrained(
    model_dir: Path, report, config: Path | None, overrides: list[str] | None, trained_here: bool
) -> Path:
    """Store ``model_dir`` as the package's shipped base, with how and when it was built."""
    import datetime
    import platform

    import torch
    import transformers

    from vlthinker.model.pretrain import REPORT_FILE, ship_base
    from vlthinker.registry.register import detect_git_commit

    built = datetime.datetime.fromtimestamp((model_dir / REPORT_FILE).stat().st_mtime, datetime.UTC)
    command = ["vlthinker", "model", "pretrain-base", "--force"]
    if config is not None:
        command += ["--config", str(config)]
    for item in overrides or []:
        command += ["--set", item]
    commit = detect_git_commit()
    provenance = {
        "rebuild": " ".join(command) + " --ship -o DIR",
        "built_at": built.isoformat(timespec="seconds"),
        "shipped_at_commit": commit,
        "trained_at_commit": commit if trained_here else None,  # None: taken from the cache
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    return ship_base(model_dir, report, provenance)


@data_app.command("generate")
def data_generate_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset directory to write.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of items.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed; same arguments give byte-identical output.")] = 0,
    split: Annotated[str, typer.Option(help="train or heldout (never share an image).")] = "train",
    tasks: Annotated[
        str | None, typer.Option(help="Comma-separated task families (default: all). See `data tasks`.")
    ] = None,
    image_size: Annotated[int, typer.Option(min=56, max=1024, help="Image side in pixels.")] = 112,
    max_difficulty: Annotated[int, typer.Option(min=1, max=3, help="Highest difficulty level.")] = 3,
) -> None:
    """Generate synthetic visual-reasoning items with exact answers and exact captions.

    Writes OUTPUT/records.jsonl (one validated record per line), OUTPUT/images/*.png and
    OUTPUT/stats.json, atomically (a temp directory renamed into place).
    """
    from vlthinker.progress import Progress
    from vlthinker.sources.generate import generate_dataset

    if split not in ("train", "heldout"):
        raise VLThinkerError(f"--split {split!r}: must be 'train' or 'heldout'")
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        path = generate_dataset(
            output,
            n=n,
            seed=seed,
            split=split,
            tasks=task_list,
            image_size=image_size,
            max_difficulty=max_difficulty,
            progress=Progress(f"generate {split}"),
        )
    except ValueError as exc:
        raise VLThinkerError(str(exc)) from None
    typer.echo(f"{n} {split} items written to {path}")


@data_app.command("tasks")
def data_tasks_cmd() -> None:
    """List the synthetic task families."""
    from vlthinker.sources.generate import ALL_TASKS

    for name in ALL_TASKS:
        typer.echo(name)


@data_app.command("show")
def data_show_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory (holds records.jsonl).")],
    limit: Annotated[int, typer.Option(help="How many records to print.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print records as JSON lines.")] = False,
) -> None:
    """Summarise a dataset (counts by source, task, difficulty, split) and print a few records."""
    from collections import Counter

    from vlthinker.records import dump_record, iter_records

    records = list(iter_records(dataset))
    if as_json:
        for record in records[:limit]:
            typer.echo(dump_record(record))
        return
    typer.echo(f"{dataset}: {len(records)} records")
    for field in ("source", "task", "difficulty", "split"):
        counts = Counter(str(getattr(r, field)) for r in records)
        typer.echo(f"  by {field}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    for record in records[:limit]:
        typer.echo(f"- {record.id} [{record.task}, d{record.difficulty}] {record.image}")
        typer.echo(f"    Q: {record.question}")
        typer.echo(f"    A: {record.answer}")
        if record.caption:
            typer.echo(f"    caption: {record.caption}")


@data_app.command("import")
def data_import_cmd(
    source: Annotated[str, typer.Argument(help="Adapter name, e.g. geometry3k, mathvista (see --list).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset directory to write.")],
    split: Annotated[str | None, typer.Option(help="Split to read (default: the adapter's).")] = None,
    path: Annotated[
        Path | None,
        typer.Option(help="Local copy (save_to_disk dir, parquet/jsonl files) instead of the hub."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Read at most this many rows.")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Skip and count rows that cannot be mapped.")] = False,
) -> None:
    """Import a public dataset (Hugging Face `datasets` layout) into our record format.

    Reads from the hub by id, or from --path; writes OUTPUT/records.jsonl, images/ and stats.json.
    """
    from vlthinker.progress import Progress
    from vlthinker.sources.adapters import import_dataset

    written = import_dataset(
        source,
        output,
        split=split,
        path=path,
        limit=limit,
        skip_invalid=skip_invalid,
        progress=Progress(source),
    )
    typer.echo(f"{source} written to {written}")


InputOption = Annotated[Path, typer.Option("--input", "-i", help="Input dataset directory.")]
OutputOption = Annotated[
    Path, typer.Option("--output", "-o", help="Output dataset directory (written atomically).")
]


def _print_stats(stats: dict) -> None:
    typer.echo(json.dumps(stats, indent=2, sort_keys=True))


@step_app.command("caption")
def step_caption_cmd(
    input_dir: InputOption,
    output: OutputOption,
    model: Annotated[
        Path | None,
        typer.Option(
            help="VLM for captions when caption.backend is not set (default: STATE_DIR/models/base)."
        ),
    ] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    state_dir: Annotated[
        Path, typer.Option(help="State directory (holds the base model).")
    ] = DEFAULT_STATE_DIR,
) -> None:
    """Caption records that lack an exact caption; keep exact captions.

    Writes OUTPUT (records with `caption` and `caption_source`, images, stats.json). Resumable: a
    re-run skips records already captioned (journal beside OUTPUT, and captions in a previous OUTPUT).
    """
    from vlthinker.tasks.data import caption

    cfg = resolve_config(config, overrides)
    stats = caption(cfg, str(input_dir), str(model or state_dir / "models" / "base"), str(output))
    _print_stats(stats)


@step_app.command("distill")
def step_distill_cmd(
    input_dir: InputOption, output: OutputOption, config: ConfigOption = None, overrides: SetOption = None
) -> None:
    """Distil reasoning traces from a text-only teacher (iteration 1).

    The teacher (distill.teacher: the offline scripted teacher, or a backend such as an
    OpenAI-compatible R1 endpoint) reads caption + question, samples k chains; the shortest verified
    chain is kept after reflection truncation and the word cap. Writes OUTPUT as an SFT dataset
    (TRL prompt/completion + our record fields) and stats.json (pass@k, kept/dropped by reason).
    """
    from vlthinker.steps.distill import distill

    cfg = resolve_config(config, overrides)
    _print_stats(distill(cfg, input_dir, output, log=log))


@step_app.command("self-generate")
def step_self_generate_cmd(
    input_dir: InputOption,
    output: OutputOption,
    model: Annotated[Path, typer.Option(help="The VLM that answers from the image (previous RL model).")],
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Self-generate reasoning traces with a VLM from the image (iterations >= 2).

    The model samples k answers per item in the <think>/<answer> format; only traces whose answer
    verifies are kept (same filters as distillation). Writes OUTPUT as an SFT dataset + stats.json.
    """
    from vlthinker.steps.self_generate import self_generate

    cfg = resolve_config(config, overrides)
    _print_stats(self_generate(cfg, model, input_dir, output, log=log))


ModelOption = Annotated[
    str, typer.Option("--model", "-m", help="Model to start from: a local directory or hub id.")
]
ModelDirOption = Annotated[
    Path, typer.Option("--output", "-o", help="Model directory to write (atomically).")
]
CheckpointOption = Annotated[
    Path | None,
    typer.Option(help="Checkpoint directory (default: .OUTPUT.checkpoints beside OUTPUT); a re-run resumes."),
]
TrackingOption = Annotated[
    str | None, typer.Option(help="MLflow tracking URI (default: the SQLite store in STATE_DIR).")
]
StateDirOption = Annotated[Path, typer.Option(help="State directory (MLflow store, caches).")]


def _training_cli_args(
    step: str, options: dict[str, object], config: Path | None, overrides: list[str] | None
):
    """The same step as CLI arguments, for the processes ``accelerate launch`` starts."""
    args = ["step", step]
    for name, value in options.items():
        if value is not None:
            args += [f"--{name}", str(value)]
    if config is not None:
        args += ["--config", str(config)]
    for item in overrides or []:
        args += ["--set", item]
    return args


def _print_training_report(report) -> None:
    """The report without its long histories, once (by the main process of a multi-process run)."""
    from vlthinker.training.common import is_main_process

    if is_main_process():
        _print_stats({k: v for k, v in report.to_json().items() if k != "extra"})


def _launch_if_needed(launch, step: str, options: dict[str, object], config, overrides) -> None:
    from vlthinker.training.launch import needs_launch, relaunch

    if needs_launch(launch):
        code = relaunch(launch, _training_cli_args(step, options, config, overrides), log)
        raise typer.Exit(code=code)


@step_app.command("sft")
def step_sft_cmd(
    input_dir: InputOption,
    model: ModelOption,
    output: ModelDirOption,
    previous_model: Annotated[
        str | None, typer.Option(help="Previous iteration's model; used when sft.init_from is 'previous'.")
    ] = None,
    checkpoint_dir: CheckpointOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    tracking_uri: TrackingOption = None,
) -> None:
    """Supervised fine-tuning (TRL SFTTrainer) on an SFT dataset (distill / self-generate output).

    Starts from --model (the base, as in the paper) or --previous-model (sft.init_from: previous);
    full fine-tune or LoRA (sft.finetune), vision tower and projector frozen by default. Checkpoints
    every sft.save_steps; a re-run after an interruption resumes from the last one. Metrics go to
    MLflow. Writes a Hugging Face model directory (safetensors + processor + training_report.json).
    With sft.launch.num_processes > 1 the step runs under `accelerate launch`.
    """
    from vlthinker.state import resolve_stores
    from vlthinker.training.sft import init_model, train_sft

    cfg = resolve_config(config, overrides)
    uri = resolve_stores(state_dir, tracking_uri).tracking_uri
    options = {
        "input": input_dir,
        "model": model,
        "output": output,
        "previous-model": previous_model,
        "checkpoint-dir": checkpoint_dir,
        "state-dir": state_dir,
        "tracking-uri": uri,
    }
    _launch_if_needed(cfg.sft.launch, "sft", options, config, overrides)
    start = init_model(cfg, model, previous_model)
    report = train_sft(
        cfg, input_dir, start, output, checkpoint_dir=checkpoint_dir, tracking_uri=uri, log=log
    )
    _print_training_report(report)


@step_app.command("select")
def step_select_cmd(
    input_dir: InputOption,
    model: ModelOption,
    output: OutputOption,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Select RL data: pass rate of each item under --model (the SFT model) from select.k samples.

    Keeps items with select.min_pass_rate < p < select.max_pass_rate (default 0 < p < 1), optionally
    ordered medium then hard (select.curriculum). Writes OUTPUT (records + prompt + pass_rate) and
    stats.json (pass-rate histogram, kept by task). Resumable (journal beside OUTPUT).
    """
    from vlthinker.training.select import select_rl_data

    cfg = resolve_config(config, overrides)
    _print_stats(select_rl_data(cfg, model, input_dir, output, log=log))


@step_app.command("rl")
def step_rl_cmd(
    input_dir: InputOption,
    model: ModelOption,
    output: ModelDirOption,
    checkpoint_dir: CheckpointOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    state_dir: StateDirOption = DEFAULT_STATE_DIR,
    tracking_uri: TrackingOption = None,
) -> None:
    """GRPO (TRL GRPOTrainer) on an RL dataset, starting from --model (the SFT model).

    Rewards from vlthinker.answers: accuracy (strict format + correct answer), plus the format reward
    when rl.format_weight > 0. KL coefficient, generations, temperature and lengths from the rl
    section; rl.use_vllm for GPU generation (colocate or server). Checkpoints and resume as `step sft`;
    metrics (reward, accuracy, completion length, KL, clip ratio) go to MLflow.
    """
    from vlthinker.state import resolve_stores
    from vlthinker.training.rl import train_rl

    cfg = resolve_config(config, overrides)
    uri = resolve_stores(state_dir, tracking_uri).tracking_uri
    options = {
        "input": input_dir,
        "model": model,
        "output": output,
        "checkpoint-dir": checkpoint_dir,
        "state-dir": state_dir,
        "tracking-uri": uri,
    }
    _launch_if_needed(cfg.rl.launch, "rl", options, config, overrides)
    report = train_rl(cfg, input_dir, model, output, checkpoint_dir=checkpoint_dir, tracking_uri=uri, log=log)
    _print_training_report(report)


@app.command("validate")
def validate_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory (holds records.jsonl and images/).")],
    kind: Annotated[str, typer.Option(help="Dataset kind: source, captioned, sft, rl or eval.")],
    against: Annotated[
        list[Path] | None,
        typer.Option(help="Evaluation dataset to guard against contamination (repeatable)."),
    ] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option(
            help="Write validation.json/.html here (default: beside DATASET as DATASET.validation.*)."
        ),
    ] = None,
) -> None:
    """Validate a dataset with its Great Expectations suite (and the contamination guard).

    Exit code 0 when every critical expectation passes, 1 otherwise; warnings never fail. Prints a
    short summary (rule, failing count, example records) and writes the full results as JSON and HTML.
    """
    from vlthinker.validation import validate_dataset

    result = validate_dataset(dataset, kind, against=against or [])
    try:
        json_path, html_path = result.write(report_dir)
    except OSError as exc:
        raise VLThinkerError(f"cannot write the validation reports: {exc}") from None
    typer.echo(result.summary())
    typer.echo(f"reports: {json_path}, {html_path}")
    if not result.success:
        raise typer.Exit(code=1)


@app.command("run")
def run_cmd(
    config: ConfigOption = None,
    overrides: SetOption = None,
    state_dir: Annotated[
        Path, typer.Option(help="State directory: SQLite MLflow store, artifacts, DVC remote, pipeline root.")
    ] = DEFAULT_STATE_DIR,
    tracking_uri: Annotated[
        str | None, typer.Option(help="Shared MLflow instead of the embedded one.")
    ] = None,
    dvc_remote: Annotated[
        str | None, typer.Option(help="Shared DVC remote instead of STATE_DIR/dvc-remote.")
    ] = None,
) -> None:
    """Run the whole pipeline on this machine (kfp.local, caching on) and print a summary.

    The same Kubeflow pipeline the cluster runs: sources -> base model -> captions -> for each
    iteration: distill (iteration 1) or self-generate -> validate -> SFT -> select -> GRPO ->
    evaluate -> gate. Each step's progress is printed; a failing step stops the run with its error.
    Re-running with nothing changed is served from the cache. Ends with a table (iteration, dataset
    sizes, held-out accuracy, gate decision and reason, champion) and the command that opens MLflow.
    """
    from pipelines.local import run_local
    from pipelines.summary import print_summary
    from vlthinker.state import resolve_stores

    cfg = resolve_config(config, overrides)
    stores = resolve_stores(state_dir, tracking_uri, dvc_remote)
    seconds = run_local(cfg, stores, log=log)
    print_summary(cfg, stores, seconds, echo=typer.echo)


@app.command("compile")
def compile_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Pipeline YAML to write.")],
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Compile the pipeline for a Kubeflow cluster.

    Writes OUTPUT (two YAML documents: the pipeline spec and its Kubernetes platform settings) with
    images, GPU requests on training/evaluation steps, a memory-backed /dev/shm, Secrets exposed as
    environment variables (by name: values never enter the file), node selectors and tolerations,
    all from the `pipeline` section of the config. Needs pipeline.tracking_uri and pipeline.dvc_remote.
    """
    from pipelines.cluster import compile_pipeline

    cfg = resolve_config(config, overrides)
    path = compile_pipeline(cfg, output)
    typer.echo(f"pipeline ({cfg.pipeline.iterations} iterations) compiled to {path}")


@app.command("submit")
def submit_cmd(
    host: Annotated[
        str, typer.Option(help="Kubeflow Pipelines endpoint, e.g. http://ml-pipeline.kubeflow:8888")
    ],
    package: Annotated[Path, typer.Option(help="Compiled pipeline YAML (from `vlthinker compile`).")],
    experiment: Annotated[str, typer.Option(help="KFP experiment name.")] = "vlthinker",
    run_name: Annotated[str | None, typer.Option(help="Run name (default: the package file name).")] = None,
    recurring_cron: Annotated[
        str | None, typer.Option(help="Create a recurring run instead (KFP cron, 6 fields with seconds).")
    ] = None,
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding a bearer token, if any.")
    ] = "KFP_TOKEN",
) -> None:
    """Submit a compiled pipeline to Kubeflow Pipelines (one run, or a recurring run)."""
    import os

    from pipelines.cluster import submit

    if not package.is_file():
        raise VLThinkerError(f"--package {package}: file not found (run `vlthinker compile` first)")
    run_id = submit(
        package,
        host,
        experiment,
        run_name or package.stem,
        token=os.environ.get(token_env) or None,
        recurring_cron=recurring_cron,
    )
    typer.echo(f"submitted to {host}: experiment {experiment!r}, id {run_id}")


attach_registry_commands(app, step_app, resolve_config, log, ConfigOption, SetOption)


def _quiet_libraries() -> None:
    """Our own progress lines replace the libraries' progress bars."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main() -> None:
    _quiet_libraries()
    try:
        app()
    except VLThinkerError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
