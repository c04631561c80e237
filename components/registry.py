"""Registry components: record the base model's scores, and the promotion gate of each iteration."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def record_base(
    config_yaml: str,
    state_dir: str,
    tracking_uri: str,
    dvc_remote: str,
    model: Input[Model],
    evaluation: Input[Artifact],
    reasoning_evaluation: Input[Artifact],
):
    """Store the base model's held-out scores so the first candidate is compared with the base.

    ``evaluation``: its direct answers (the gate's reference); ``reasoning_evaluation``: the base asked
    to reason step by step on the same items, a control kept beside them for the run's summary.
    """
    from vlthinker.tasks.data import parse_config
    from vlthinker.tasks.registry import record_base
    from vlthinker.tasks.timing import timed

    with timed("record-base"):
        record_base(
            parse_config(config_yaml),
            state_dir,
            tracking_uri,
            dvc_remote,
            model.path,
            evaluation.path,
            reasoning_evaluation.path,
        )


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def gate(
    config_yaml: str,
    state_dir: str,
    tracking_uri: str,
    dvc_remote: str,
    run_label: str,
    iteration: int,
    model: Input[Model],
    evaluation: Input[Artifact],
    control_evaluation: Input[Artifact],
    sft_model: Input[Model],
    sft_data: Input[Dataset],
    rl_data: Input[Dataset],
    source: Input[Dataset],
    heldout: Input[Dataset],
    report: Output[Markdown],
):
    """Register the candidate with lineage (once), compare it with the champion on the same items, decide.

    ``control_evaluation``: the iteration's SFT model alone on the same items, recorded on the version;
    with ``registry.register_sft`` that model (``sft_model``) is registered too, not gated.
    """
    from vlthinker.tasks.data import parse_config
    from vlthinker.tasks.registry import gate
    from vlthinker.tasks.timing import timed

    with timed("gate"):
        datasets = {
            role: {**artifact.metadata, "path": artifact.path}
            for role, artifact in (("train", source), ("sft_data", sft_data), ("rl_data", rl_data))
        }
        result = gate(
            parse_config(config_yaml),
            state_dir,
            tracking_uri,
            dvc_remote,
            run_label,
            iteration,
            model.path,
            evaluation.path,
            datasets,
            control_eval_dir=control_evaluation.path,
            sft_model_dir=sft_model.path,
        )
        # champion: the champion after this gate (0 = none), what model_from=champion generates with
        report.metadata.update(
            {
                "version": result["version"],
                "decision": result["decision"],
                "champion": result["champion"] or 0,
            }
        )
        with open(report.path, "w", encoding="utf-8") as handle:
            handle.write("```\n" + result["report"] + "\n```\n")
