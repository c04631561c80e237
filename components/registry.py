"""Registry components: record the base model's scores, and the promotion gate of each iteration."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def record_base(
    config_yaml: str, tracking_uri: str, run_label: str, model: Input[Model], evaluation: Input[Artifact]
):
    """Store the base model's held-out scores so the first candidate is compared with the base."""
    from vlthinker.tasks.registry import record_base

    from vlthinker.tasks.data import parse_config

    record_base(
        parse_config(config_yaml), tracking_uri, run_label, model.path, dict(model.metadata), evaluation.path
    )


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def gate(
    config_yaml: str,
    tracking_uri: str,
    dvc_remote: str,
    run_label: str,
    iteration: int,
    model: Input[Model],
    evaluation: Input[Artifact],
    sft_data: Input[Dataset],
    rl_data: Input[Dataset],
    source: Input[Dataset],
    heldout: Input[Dataset],
    report: Output[Markdown],
):
    """Register the candidate with lineage, compare it with the champion on the same items, decide."""
    from vlthinker.tasks.registry import gate

    from vlthinker.tasks.data import parse_config

    datasets = {
        "source": dict(source.metadata),
        "sft_data": dict(sft_data.metadata),
        "rl_data": dict(rl_data.metadata),
        "heldout": dict(heldout.metadata),
    }
    markdown = gate(
        parse_config(config_yaml),
        tracking_uri,
        dvc_remote,
        run_label,
        iteration,
        model.path,
        evaluation.path,
        datasets,
    )
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(markdown)
