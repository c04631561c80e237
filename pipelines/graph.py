"""The one pipeline graph: N iterations of (traces -> validate -> SFT -> select -> GRPO -> evaluate -> gate).

Each iteration also evaluates its SFT model alone, as a control recorded beside the candidate; the
base is evaluated twice: answering directly (the gate's reference, as the paper prompts its baseline)
and asked to reason step by step (a control recorded beside it: what the base's own chains reach).

Iteration 1 distils from the text-only teacher; later iterations self-generate with the previous
iteration's RL model (the paper's loop), or with ``self_generate.model_from: champion`` with the
champion after the previous gate (the base while there is none). Promotion is the registry's concern and never blocks the
loop: a rejected candidate is recorded, not served. The number of iterations is unrolled when the
pipeline is built, from the config; everything else a step needs travels as the config YAML string.
(No ``from __future__ import annotations`` here: KFP reads the pipeline's annotations as types.)
"""

from kfp import dsl

from components import data, model, registry
from vlthinker.config import Config

GPU_STEPS = frozenset(
    {
        "base-model",
        "caption",
        "self-generate",
        "self-generate-from-champion",
        "sft",
        "select",
        "rl",
        "evaluate",
    }
)


def build_pipeline(config: Config, cluster: bool = False):
    """Return the ``@dsl.pipeline`` function for this config (iterations unrolled).

    ``cluster`` adds images, GPU requests, shared memory, secrets and scheduling from
    ``config.pipeline`` (kfp.local ignores those settings, so local runs build without them).
    """
    iterations = config.pipeline.iterations

    def step(op, name: str, **inputs):
        task = op(**inputs).set_display_name(name)
        if cluster:
            from pipelines.cluster import configure_task

            configure_task(task, config, gpu=task.component_spec.name in GPU_STEPS)
        return task

    @dsl.pipeline(
        name=config.pipeline.name, description="OpenVLThinker iterative SFT + GRPO self-improvement"
    )
    def vlthinker_pipeline(
        config_yaml: str, state_dir: str, tracking_uri: str, dvc_remote: str, run_label: str
    ):
        common = {"config_yaml": config_yaml}
        tracked = {**common, "tracking_uri": tracking_uri, "run_label": run_label}
        stores = {**common, "state_dir": state_dir, "tracking_uri": tracking_uri, "dvc_remote": dvc_remote}
        sources = step(data.make_sources, "sources", dvc_remote=dvc_remote, **common)
        train, heldout = sources.outputs["train"], sources.outputs["heldout"]

        def validate(name: str, kind: str, dataset):
            return step(
                data.validate, f"validate {name}", kind=kind, dataset=dataset, heldout=heldout, **common
            )

        def evaluate(name: str, stage: str, model_artifact):
            return step(model.evaluate, name, stage=stage, model=model_artifact, heldout=heldout, **common)

        validate("sources", "source", train)
        validate("held-out", "eval", heldout)
        base = step(model.base_model, "base model", state_dir=state_dir, **common)
        base_eval = evaluate("evaluate base", "base", base.outputs["model"])
        base_reasoning_eval = evaluate(
            "evaluate base step by step (control)", "base-reasoning", base.outputs["model"]
        )
        captioned = step(
            data.caption,
            "caption",
            dvc_remote=dvc_remote,
            source=train,
            base_model=base.outputs["model"],
            **common,
        ).outputs["captioned"]
        captions_ok = validate("captions", "captioned", captioned)

        previous_rl, previous_gate = None, None
        for iteration in range(1, iterations + 1):
            tag = f"iter {iteration}"
            if previous_rl is None:
                traces = step(
                    data.distill, f"{tag}: distill", dvc_remote=dvc_remote, captioned=captioned, **common
                )
                traces.after(captions_ok)
            elif config.self_generate.model_from == "champion":
                traces = step(
                    data.self_generate_from_champion,
                    f"{tag}: self-generate (champion)",
                    dvc_remote=dvc_remote,
                    state_dir=state_dir,
                    tracking_uri=tracking_uri,
                    captioned=captioned,
                    base_model=base.outputs["model"],
                    previous_gate=previous_gate.outputs["report"],
                    **common,
                )
            else:
                traces = step(
                    data.self_generate,
                    f"{tag}: self-generate",
                    dvc_remote=dvc_remote,
                    captioned=captioned,
                    model=previous_rl,
                    **common,
                )
            sft_data = traces.outputs["sft_data"]
            traces_ok = validate(f"{tag} traces", "sft", sft_data)
            sft = step(
                model.sft,
                f"{tag}: SFT",
                iteration=iteration,
                sft_data=sft_data,
                base=base.outputs["model"],
                **tracked,
            ).after(traces_ok)
            # the SFT-only control: what the iteration's GRPO step adds (or costs) is the candidate's
            # accuracy minus this, on the same held-out items (recorded on the candidate, not gated)
            sft_eval = evaluate(
                f"{tag}: evaluate SFT (control)", f"iter{iteration}-sft", sft.outputs["model"]
            )
            selected = step(
                model.select,
                f"{tag}: select RL data",
                dvc_remote=dvc_remote,
                iteration=iteration,
                source=captioned,
                model=sft.outputs["model"],
                **common,
            )
            rl_data = selected.outputs["rl_data"]
            rl_ok = validate(f"{tag} RL data", "rl", rl_data)
            rl = step(
                model.rl,
                f"{tag}: GRPO",
                iteration=iteration,
                rl_data=rl_data,
                sft_model=sft.outputs["model"],
                **tracked,
            ).after(rl_ok)
            rl_eval = evaluate(f"{tag}: evaluate", f"iter{iteration}-rl", rl.outputs["model"])
            if iteration == 1:
                # the registry is first written once a candidate exists: a failure before it leaves
                # the registry untouched
                base_recorded = step(
                    registry.record_base,
                    "record base",
                    model=base.outputs["model"],
                    evaluation=base_eval.outputs["evaluation"],
                    reasoning_evaluation=base_reasoning_eval.outputs["evaluation"],
                    **stores,
                ).after(rl_eval)
            gate = step(
                registry.gate,
                f"{tag}: gate",
                run_label=run_label,
                iteration=iteration,
                model=rl.outputs["model"],
                evaluation=rl_eval.outputs["evaluation"],
                control_evaluation=sft_eval.outputs["evaluation"],
                sft_model=sft.outputs["model"],
                sft_data=sft_data,
                rl_data=rl_data,
                source=captioned,
                heldout=heldout,
                **stores,
            ).after(base_recorded)
            if previous_gate is not None:
                gate.after(previous_gate)  # candidates are registered in iteration order
            previous_gate, previous_rl = gate, rl.outputs["model"]

    return vlthinker_pipeline
