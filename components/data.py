"""Data components: sources, captions, distillation, self-generation, validation."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Model, Output

from components.images import CPU_IMAGE, GPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def make_sources(config_yaml: str, dvc_remote: str, train: Output[Dataset], heldout: Output[Dataset]):
    """Generate the synthetic train and held-out sets; push both to the DVC remote."""
    from vlthinker.tasks.data import make_sources, parse_config, publish
    from vlthinker.tasks.timing import timed

    with timed("sources"):
        config = parse_config(config_yaml)
        summary = make_sources(config, train.path, heldout.path)
        train.metadata.update(publish(train.path, dvc_remote, summary["train"]))
        heldout.metadata.update(publish(heldout.path, dvc_remote, summary["heldout"]))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def caption(
    config_yaml: str,
    dvc_remote: str,
    source: Input[Dataset],
    base_model: Input[Model],
    captioned: Output[Dataset],
):
    """Caption records without an exact caption (exact captions are kept)."""
    from vlthinker.tasks.data import caption, parse_config, publish
    from vlthinker.tasks.timing import timed

    with timed("caption"):
        summary = caption(parse_config(config_yaml), source.path, base_model.path, captioned.path)
        captioned.metadata.update(publish(captioned.path, dvc_remote, summary))


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def distill(config_yaml: str, dvc_remote: str, captioned: Input[Dataset], sft_data: Output[Dataset]):
    """Iteration 1: a text-only teacher writes reasoning; the shortest verified trace per item is kept."""
    from vlthinker.tasks.data import distill, parse_config, publish
    from vlthinker.tasks.timing import timed

    with timed("distill"):
        stats = distill(parse_config(config_yaml), captioned.path, sft_data.path)
        sft_data.metadata.update(publish(sft_data.path, dvc_remote, stats))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def self_generate(
    config_yaml: str,
    dvc_remote: str,
    captioned: Input[Dataset],
    model: Input[Model],
    sft_data: Output[Dataset],
):
    """Iterations >= 2: the previous RL model answers from the image; verified traces are kept."""
    from vlthinker.tasks.data import parse_config, publish, self_generate
    from vlthinker.tasks.timing import timed

    with timed("self-generate"):
        stats = self_generate(parse_config(config_yaml), model.path, captioned.path, sft_data.path)
        sft_data.metadata.update(publish(sft_data.path, dvc_remote, stats))


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def self_generate_from_champion(
    config_yaml: str,
    dvc_remote: str,
    state_dir: str,
    tracking_uri: str,
    captioned: Input[Dataset],
    base_model: Input[Model],
    previous_gate: Input[Markdown],
    sft_data: Output[Dataset],
):
    """Iterations >= 2 with ``self_generate.model_from: champion``: the champion after the previous
    gate (or the base, with none) answers from the image; verified traces are kept."""
    import tempfile

    from vlthinker.tasks.data import parse_config, publish, self_generate
    from vlthinker.tasks.registry import generator_model
    from vlthinker.tasks.timing import timed

    with timed("self-generate"), tempfile.TemporaryDirectory(prefix="vlthinker-champion-") as scratch:
        config = parse_config(config_yaml)
        champion = int(previous_gate.metadata["champion"])
        model_dir, label = generator_model(
            config, state_dir, tracking_uri, dvc_remote, champion, base_model.path, scratch
        )
        print(f"self-generate: traces from {label}")
        stats = self_generate(config, model_dir, captioned.path, sft_data.path)
        sft_data.metadata.update(publish(sft_data.path, dvc_remote, {**stats, "generator": label}))
        sft_data.metadata["generator_version"] = champion  # the gate's parent version (0: the base)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate(
    config_yaml: str, kind: str, dataset: Input[Dataset], heldout: Input[Dataset], report: Output[HTML]
):
    """Great Expectations suite of the kind + contamination guard against the held-out set.

    A critical failure raises, which stops the run; the HTML report is an artifact either way.
    """
    from vlthinker.tasks.data import parse_config, validate
    from vlthinker.tasks.timing import timed

    with timed("validate"):
        validate(parse_config(config_yaml), dataset.path, kind, [heldout.path], report_html=report.path)
