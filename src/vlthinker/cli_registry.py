"""CLI commands of the evaluation / registry / lineage part, attached to the app by :func:`attach`.

``vlthinker step evaluate|record-base|register|gate``, ``vlthinker registry status|rollback|recover``
and ``vlthinker lineage``. Every command that touches the stores takes ``--state-dir`` (default
``.vlthinker``: the embedded MLflow store, its artifacts and the local DVC remote) or explicit
``--tracking-uri`` / ``--dvc-remote`` for shared ones; a basic-auth MLflow server reads its
credentials from ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``.
"""

# No `from __future__ import annotations`: typer reads the option types that attach() closes over.
import json
from pathlib import Path
from typing import Annotated

import typer

from vlthinker.state import DEFAULT_STATE_DIR, Stores, resolve_stores

registry_app = typer.Typer(
    help="The MLflow registered model: status, rollback of the champion, recovery of a dead gate.",
    no_args_is_help=True,
)

StateDirOption = Annotated[
    Path,
    typer.Option(help="State directory: embedded MLflow store (mlflow.db), artifacts, local DVC remote."),
]
TrackingUriOption = Annotated[
    str | None, typer.Option(help="Shared MLflow (e.g. http://mlflow:5000) instead of the embedded store.")
]
DvcRemoteOption = Annotated[
    str | None, typer.Option(help="Shared DVC remote (e.g. s3://bucket/dvc) instead of STATE_DIR/dvc-remote.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
DatasetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--dataset",
        help="A dataset the model saw: ROLE=DIR or ROLE=md5:HASH, optionally @FROM1,FROM2 (the roles "
        "it was derived from). Pushed to the DVC remote before registration. Repeatable.",
    ),
]


def _stores(state_dir: Path, tracking_uri: str | None, dvc_remote: str | None) -> Stores:
    return resolve_stores(state_dir, tracking_uri, dvc_remote)


def _datasets(specs: list[str] | None):
    from vlthinker.registry.register import parse_dataset_spec

    return [parse_dataset_spec(spec) for spec in specs or []]


def attach(app: typer.Typer, step_app: typer.Typer, resolve_config, log, config_option, set_option) -> None:
    """Add this module's commands to the main app (``resolve_config``/``log`` are the CLI's own)."""

    @step_app.command("evaluate")
    def step_evaluate_cmd(
        model: Annotated[Path, typer.Option(help="Model directory to evaluate.")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Evaluation directory to write.")],
        benchmark: Annotated[
            list[str],
            typer.Option(help="NAME=DIR of a benchmark dataset (heldout, mathvista, ...). Repeatable."),
        ],
        prompt_style: Annotated[
            str,
            typer.Option(help="reasoning (<think>/<answer>: SFT/RL models) or direct (\\boxed{}: the base)."),
        ] = "reasoning",
        log_to_mlflow: Annotated[
            bool, typer.Option(help="Also log the evaluation as an MLflow run (metrics, table, plot).")
        ] = False,
        config: config_option = None,
        overrides: set_option = None,
        state_dir: StateDirOption = DEFAULT_STATE_DIR,
        tracking_uri: TrackingUriOption = None,
    ) -> None:
        """Evaluate a model greedily on the benchmarks (evaluation.* config).

        Writes OUTPUT/predictions.jsonl (one graded row per item), metrics.json (accuracy overall, per
        benchmark, task and difficulty; answer-format rate), summary.md, summary.html, accuracy.png.
        With --log-to-mlflow the run id is printed last (`step register --eval-run-id` links it).
        """
        from vlthinker.steps.evaluate import evaluate_step, log_evaluation, parse_benchmark_specs

        cfg = resolve_config(config, overrides)
        metrics = evaluate_step(cfg, model, parse_benchmark_specs(benchmark), output, prompt_style, log=log)
        typer.echo((output / "summary.md").read_text())
        typer.echo(f"accuracy {100 * metrics['accuracy']:.1f}% on {metrics['n']} items; results in {output}")
        if log_to_mlflow:
            run_id = log_evaluation(cfg, _stores(state_dir, tracking_uri, None), output, model.name, log=log)
            typer.echo(run_id)

    @step_app.command("record-base")
    def step_record_base_cmd(
        evaluation: Annotated[
            Path, typer.Option(help="Evaluation directory of the base model (prompt style direct).")
        ],
        model_ref: Annotated[str, typer.Option(help="What the base is (directory, hub id or cache key).")],
        dataset: DatasetOption = None,
        config: config_option = None,
        overrides: set_option = None,
        state_dir: StateDirOption = DEFAULT_STATE_DIR,
        tracking_uri: TrackingUriOption = None,
        dvc_remote: DvcRemoteOption = None,
    ) -> None:
        """Record the base model's evaluation on the registered model (the first gate compares with it)."""
        from vlthinker.steps.gate import record_base_step

        cfg = resolve_config(config, overrides)
        record = record_base_step(
            cfg,
            _stores(state_dir, tracking_uri, dvc_remote),
            evaluation,
            model_ref,
            _datasets(dataset),
            log=log,
        )
        typer.echo(json.dumps(record["metrics"], indent=2, sort_keys=True))

    @step_app.command("register")
    def step_register_cmd(
        model: Annotated[Path, typer.Option(help="Model directory (the checkpoint to register).")],
        evaluation: Annotated[Path, typer.Option(help="Its evaluation directory (from `step evaluate`).")],
        iteration: Annotated[int, typer.Option(min=1, help="Iteration of the loop that produced it.")],
        stage: Annotated[str, typer.Option(help="rl or sft.")] = "rl",
        parent: Annotated[
            int | None, typer.Option(help="Parent version (the model it descends from); none = the base.")
        ] = None,
        dataset: DatasetOption = None,
        pipeline_run_id: Annotated[str | None, typer.Option(help="KFP run id, recorded as lineage.")] = None,
        eval_run_id: Annotated[
            str | None, typer.Option(help="MLflow run of this evaluation (`step evaluate --log-to-mlflow`).")
        ] = None,
        git_commit: Annotated[str | None, typer.Option(help="Default: `git rev-parse HEAD` here.")] = None,
        config: config_option = None,
        overrides: set_option = None,
        state_dir: StateDirOption = DEFAULT_STATE_DIR,
        tracking_uri: TrackingUriOption = None,
        dvc_remote: DvcRemoteOption = None,
    ) -> None:
        """Push the datasets to the DVC remote, then register the model as a new version with its lineage.

        Prints the version number (the last line of stdout).
        """
        from vlthinker.steps.gate import register_step

        if stage not in ("rl", "sft"):
            raise typer.BadParameter("--stage must be rl or sft")
        cfg = resolve_config(config, overrides)
        version = register_step(
            cfg,
            _stores(state_dir, tracking_uri, dvc_remote),
            model,
            evaluation,
            iteration,
            stage,
            parent,
            _datasets(dataset),
            pipeline_run_id,
            git_commit,
            eval_run_id=eval_run_id,
            log=log,
        )
        typer.echo(str(version))

    @step_app.command("gate")
    def step_gate_cmd(
        version: Annotated[int, typer.Option(help="The registered version to gate.")],
        as_json: JsonOption = False,
        config: config_option = None,
        overrides: set_option = None,
        state_dir: StateDirOption = DEFAULT_STATE_DIR,
        tracking_uri: TrackingUriOption = None,
        dvc_remote: DvcRemoteOption = None,
    ) -> None:
        """Promote VERSION to champion iff it beats the champion (or the base) on identical items.

        Paired test (registry.test: exact McNemar or paired bootstrap), registry.margin and
        registry.alpha; the decision and its reasons are stored on the version. Exit code 0 for
        promote and reject alike.
        """
        from vlthinker.steps.gate import gate_step

        cfg = resolve_config(config, overrides)
        result = gate_step(cfg, _stores(state_dir, tracking_uri, dvc_remote), version, log=log)
        typer.echo(json.dumps(result.to_json(), indent=2, sort_keys=True) if as_json else result.report())

    def _open(config, overrides, state_dir, tracking_uri, dvc_remote):
        """The config and the project's registry in the chosen stores (shared by the registry commands)."""
        from vlthinker.registry.client import open_registry

        cfg = resolve_config(config, overrides)
        return cfg, open_registry(cfg, _stores(state_dir, tracking_uri, dvc_remote), log)

    @registry_app.command("status")
    def registry_status_cmd(
        as_json: JsonOption = False,
        config: config_option = None,
        overrides: set_option = None,
        state_dir: StateDirOption = DEFAULT_STATE_DIR,
        tracking_uri: TrackingUriOption = None,
        dvc_remote: DvcRemoteOption = None,
    ) -> None:
        """The registered model: champion, base scores, every version (decision, reasons, metrics, tags)."""
        from vlthinker.registry.lock import GateLock
        from vlthinker.registry.status import format_status, registry_status

        _, registry = _open(config, overrides, state_dir, tracking_uri, dvc_remote)
        status = registry_status(registry)
        if as_json:
            typer.echo(json.dumps(status, indent=2, sort_keys=True))
        else:
            typer.echo(format_status(status, GateLock(registry).pending()))

    @registry_app.command("rollback")
    def registry_rollback_cmd(
        reason: Annotated[str, typer.Option(help="Why (stored on the demoted version).")] = "",
        config: config_option = None,
        overrides: set_option = None,
        state_dir: StateDirOption = DEFAULT_STATE_DIR,
        tracking_uri: TrackingUriOption = None,
        dvc_remote: DvcRemoteOption = None,
    ) -> None:
        """Make the previous champion the champion again (under the gate lock)."""
        from vlthinker.registry.gate import GateSettings, rollback

        cfg, registry = _open(config, overrides, state_dir, tracking_uri, dvc_remote)
        done = rollback(registry, GateSettings.from_config(cfg.registry), reason)
        name = done["model"]
        target = (
            f"{name}/{done['to']}" if done["to"] is not None else "none (the base is the reference again)"
        )
        typer.echo(f"champion: {name}/{done['from']} -> {target}")

    @registry_app.command("recover")
    def registry_recover_cmd(
        config: config_option = None,
        overrides: set_option = None,
        state_dir: StateDirOption = DEFAULT_STATE_DIR,
        tracking_uri: TrackingUriOption = None,
        dvc_remote: DvcRemoteOption = None,
    ) -> None:
        """Finish a gate or rollback that lost MLflow after journaling its decision (waits out its lease)."""
        from vlthinker.registry.gate import GateSettings, recover

        cfg, registry = _open(config, overrides, state_dir, tracking_uri, dvc_remote)
        done = recover(registry, GateSettings.from_config(cfg.registry))
        intent = (done["completed"] or {}).get("intent")
        typer.echo(f"completed the journaled {intent['op']} ({intent})" if intent else "nothing to recover")

    @app.command("lineage")
    def lineage_cmd(
        ref: Annotated[
            str, typer.Argument(help="NAME@ALIAS (e.g. vlthinker@champion), NAME/VERSION or NAME.")
        ],
        fetch: Annotated[
            tuple[str, Path] | None,
            typer.Option(help="HASH DIR: restore that dataset of the lineage from the DVC remote into DIR."),
        ] = None,
        as_json: JsonOption = False,
        config: config_option = None,
        overrides: set_option = None,
        state_dir: StateDirOption = DEFAULT_STATE_DIR,
        tracking_uri: TrackingUriOption = None,
        dvc_remote: DvcRemoteOption = None,
    ) -> None:
        """The audit trail: model -> datasets (hash, remote object) -> parent model -> ... -> sources."""
        from vlthinker.registry import lineage

        _, registry = _open(config, overrides, state_dir, tracking_uri, dvc_remote)
        tree = lineage.walk(registry, ref)
        if fetch is not None:
            md5, target = fetch
            path = lineage.fetch(tree, md5, target, dvc_remote)
            typer.echo(f"dataset {md5} restored into {path}")
            return
        typer.echo(json.dumps(tree, indent=2, sort_keys=True) if as_json else lineage.format_lineage(tree))

    app.add_typer(registry_app, name="registry")
