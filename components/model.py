"""Model components: base model, SFT, RL data selection, GRPO, evaluation."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def base_model(config_yaml: str, state_dir: str, model: Output[Model]):
    """The base VLM: the offline tiny model pretrained (cached by content), or a hub/local model."""
    from vlthinker.tasks.data import parse_config
    from vlthinker.tasks.model import base_model
    from vlthinker.tasks.timing import timed

    with timed("base-model"):
        model.metadata.update(base_model(parse_config(config_yaml), state_dir, model.path))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def sft(
    config_yaml: str,
    tracking_uri: str,
    run_label: str,
    iteration: int,
    sft_data: Input[Dataset],
    base: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Supervised fine-tuning on verified traces, starting from the base model (as in the paper)."""
    from vlthinker.tasks.data import parse_config
    from vlthinker.tasks.model import record_metrics, sft
    from vlthinker.tasks.timing import timed

    with timed("sft"):
        report = sft(
            parse_config(config_yaml),
            sft_data.path,
            base.path,
            model.path,
            tracking_uri,
            run_label,
            iteration,
        )
        model.metadata.update(report)
        record_metrics(metrics, report.get("metrics", {}))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def select(
    config_yaml: str,
    dvc_remote: str,
    iteration: int,
    source: Input[Dataset],
    model: Input[Model],
    rl_data: Output[Dataset],
):
    """RL data: items whose pass rate under the SFT model lies in the configured band."""
    from vlthinker.tasks.data import parse_config, publish
    from vlthinker.tasks.model import select
    from vlthinker.tasks.timing import timed

    with timed("select"):
        summary = select(parse_config(config_yaml), source.path, model.path, rl_data.path, iteration)
        rl_data.metadata.update(publish(rl_data.path, dvc_remote, summary))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def rl(
    config_yaml: str,
    tracking_uri: str,
    run_label: str,
    iteration: int,
    rl_data: Input[Dataset],
    sft_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """GRPO with verifiable rewards (accuracy, optional format) from the SFT model."""
    from vlthinker.tasks.data import parse_config
    from vlthinker.tasks.model import record_metrics, rl
    from vlthinker.tasks.timing import timed

    with timed("rl"):
        report = rl(
            parse_config(config_yaml),
            rl_data.path,
            sft_model.path,
            model.path,
            tracking_uri,
            run_label,
            iteration,
        )
        model.metadata.update(report)
        record_metrics(metrics, report.get("metrics", {}))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def evaluate(
    config_yaml: str,
    stage: str,
    model: Input[Model],
    heldout: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    summary: Output[Markdown],
):
    """Greedy evaluation on the held-out benchmark: predictions table, accuracy per task/difficulty."""
    from vlthinker.tasks.data import parse_config
    from vlthinker.tasks.model import evaluate, record_metrics
    from vlthinker.tasks.timing import timed

    with timed("evaluate"):
        result = evaluate(parse_config(config_yaml), model.path, heldout.path, evaluation.path, stage)
        evaluation.metadata.update(result["metadata"])
        record_metrics(metrics, result["metrics"])
        with open(summary.path, "w", encoding="utf-8") as handle:
            handle.write(result["markdown"])
