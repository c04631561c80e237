"""Cluster build of the pipeline: images, GPUs, shared memory, secrets, scheduling; compile and submit.

All of it comes from ``config.pipeline``; secret VALUES never enter the compiled YAML, only the names
of Kubernetes Secrets whose keys become environment variables of the steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlthinker.config import Config
from vlthinker.errors import VLThinkerError

# Secret key -> environment variable, per secret kind (keys as the Helm chart's guide creates them).
SECRET_ENV = {
    "mlflow": {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"},
    "s3": {"access-key-id": "AWS_ACCESS_KEY_ID", "secret-access-key": "AWS_SECRET_ACCESS_KEY"},
}


def configure_task(task, config: Config, gpu: bool):
    """Apply the image, resources and Kubernetes settings of one step."""
    from kfp import kubernetes

    p = config.pipeline
    task.set_container_image(p.gpu_image if gpu else p.cpu_image)
    task.set_caching_options(True)
    if gpu and p.gpu.count > 0:
        task.set_accelerator_type(p.gpu.accelerator).set_accelerator_limit(p.gpu.count)
        task.set_memory_limit(p.gpu.memory).set_cpu_limit(p.gpu.cpu)
        kubernetes.empty_dir_mount(
            task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=p.gpu.shm_size
        )
    for kind, mapping in SECRET_ENV.items():
        name = getattr(p.secrets, kind)
        if name:
            kubernetes.use_secret_as_env(task, secret_name=name, secret_key_to_env=mapping)
    if p.secrets.teacher and config.distill.backend is not None:
        kubernetes.use_secret_as_env(
            task,
            secret_name=p.secrets.teacher,
            secret_key_to_env={"api-key": config.distill.backend.api_key_env},
        )
    for key, value in sorted(p.node_selector.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in p.tolerations:
        kubernetes.add_toleration(task, **toleration)
    return task


def config_yaml(config: Config) -> str:
    """The config as the pipeline's string parameter: one line of JSON (JSON is YAML).

    One line on purpose: the KFP compiler copies parameter defaults into a comment header, and a
    multi-line default breaks the compiled YAML.
    """
    return json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def compile_pipeline(config: Config, output: str | Path) -> Path:
    """Write the pipeline YAML for a cluster (the config is baked in as the default parameter)."""
    from kfp import compiler

    from pipelines.graph import build_pipeline

    p = config.pipeline
    if not p.tracking_uri or not p.dvc_remote:
        raise VLThinkerError(
            "compiling for a cluster needs pipeline.tracking_uri (the MLflow server) and pipeline.dvc_remote "
            "(e.g. s3://bucket/dvc) in the config"
        )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    defaults: dict[str, Any] = {
        "config_yaml": config_yaml(config),
        "state_dir": "/tmp/vlthinker",
        "tracking_uri": p.tracking_uri,
        "dvc_remote": p.dvc_remote,
        "run_label": config.content_hash()[:12],
    }
    compiler.Compiler().compile(
        build_pipeline(config, cluster=True), str(output), pipeline_parameters=defaults
    )
    return output


def submit(
    package: str | Path,
    host: str,
    experiment: str,
    run_name: str,
    token: str | None = None,
    recurring_cron: str | None = None,
) -> str:
    """Submit a compiled pipeline to a Kubeflow Pipelines endpoint; return the run (or job) id."""
    import kfp

    client = kfp.Client(host=host, existing_token=token)
    experiment_id = client.create_experiment(name=experiment).experiment_id
    if recurring_cron:
        job = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=run_name,
            cron_expression=recurring_cron,
            pipeline_package_path=str(package),
        )
        return job.recurring_run_id
    run = client.run_pipeline(
        experiment_id=experiment_id, job_name=run_name, pipeline_package_path=str(package)
    )
    return run.run_id
