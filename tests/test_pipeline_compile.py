"""The cluster build of the pipeline: both YAML documents, every component, GPUs, no secret values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vlthinker.cli import app
from vlthinker.config import load_config

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = {
    "make-sources",
    "validate",
    "base-model",
    "evaluate",
    "record-base",
    "caption",
    "distill",
    "self-generate",
    "sft",
    "select",
    "rl",
    "gate",
}
GPU = {"base-model", "caption", "self-generate", "sft", "select", "rl", "evaluate"}
SECRET_VALUE = "s3cr3t-value-never-in-yaml"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compile") / "pipeline.yaml"
    cfg = tmp_path_factory.mktemp("cfg") / "cluster.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "pipeline": {
                    "iterations": 3,
                    "tracking_uri": "http://vlthinker-mlflow:5000",
                    "dvc_remote": "s3://bucket/dvc",
                    "gpu": {"count": 2, "accelerator": "nvidia.com/gpu", "shm_size": "32Gi"},
                    "secrets": {"teacher": "teacher-key"},
                    "node_selector": {"pool": "gpu"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                },
                "distill": {
                    "teacher": "backend",
                    "backend": {
                        "kind": "openai",
                        "model": "deepseek-r1",
                        "base_url": "https://api.example.test/v1",
                        "api_key_env": "TEACHER_API_KEY",
                    },
                },
            }
        )
    )
    env = {
        "TEACHER_API_KEY": SECRET_VALUE,
        "MLFLOW_TRACKING_PASSWORD": SECRET_VALUE,
        "AWS_SECRET_ACCESS_KEY": SECRET_VALUE,
    }
    result = subprocess.run(
        [sys.executable, "-m", "vlthinker.cli", "compile", "--config", str(cfg), "--output", str(out)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    return text, list(yaml.safe_load_all(text))


def test_two_documents_and_every_component(compiled):
    _, docs = compiled
    assert len(docs) == 2
    spec, platform = docs
    tasks = spec["root"]["dag"]["tasks"]
    names = {
        task["componentRef"]["name"].removeprefix("comp-").rstrip("-0123456789") for task in tasks.values()
    }
    assert names == COMPONENTS
    # iterations unrolled: one gate per iteration, self-generation from iteration 2 on
    assert sum(1 for t in tasks.values() if t["componentRef"]["name"].startswith("comp-gate")) == 3
    assert sum(1 for t in tasks.values() if t["componentRef"]["name"].startswith("comp-self-generate")) == 2
    assert "platforms" in platform and "kubernetes" in platform["platforms"]


def test_gpu_requests_on_training_steps(compiled):
    _, (spec, platform) = compiled
    executors = spec["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        component = name.removeprefix("exec-").rstrip("-0123456789")
        resources = executor["container"].get("resources", {})
        if component in GPU:
            assert resources["accelerator"]["resourceCount"] == "2", name
            assert "gpu" in executor["container"]["image"]
        else:
            assert "accelerator" not in resources, name
            assert "cpu" in executor["container"]["image"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    sft = next(v for k, v in k8s.items() if k.startswith("exec-sft"))
    assert sft["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
    assert sft["emptyDirMounts"][0]["medium"] == "Memory"
    assert sft["nodeSelector"]["labels"] == {"pool": "gpu"}
    assert sft["tolerations"][0]["key"] == "nvidia.com/gpu"
    secret_names = {s["secretName"] for s in sft["secretAsEnv"]}
    assert secret_names == {"vlthinker-mlflow-client", "vlthinker-s3", "teacher-key"}


def test_no_secret_value_in_yaml(compiled):
    text, _ = compiled
    assert SECRET_VALUE not in text


def test_compile_needs_cluster_stores(tmp_path):
    result = CliRunner().invoke(app, ["compile", "--output", str(tmp_path / "p.yaml")])
    assert result.exit_code != 0
    assert "tracking_uri" in (result.output + str(result.exception))


def test_config_parameter_is_one_line_json(compiled):
    _, (spec, _) = compiled
    default = spec["root"]["inputDefinitions"]["parameters"]["config_yaml"]["defaultValue"]
    assert "\n" not in default
    assert load_config(None, None).model_dump(mode="json").keys() == json.loads(default).keys()


def test_self_generation_from_the_champion_waits_for_the_previous_gate(tmp_path):
    from pipelines.cluster import compile_pipeline

    config = load_config(
        None,
        {
            "pipeline.iterations": 3,
            "pipeline.tracking_uri": "http://vlthinker-mlflow:5000",
            "pipeline.dvc_remote": "s3://bucket/dvc",
            "self_generate.model_from": "champion",
        },
    )
    spec, platform = yaml.safe_load_all(compile_pipeline(config, tmp_path / "p.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    generators = {k: t for k, t in tasks.items() if k.startswith("self-generate")}
    assert all(
        t["componentRef"]["name"].startswith("comp-self-generate-from-champion") for t in generators.values()
    )
    assert len(generators) == 2, "iterations 2 and 3"
    gates = sorted(k for k in tasks if k.startswith("gate"))  # gate, gate-2, gate-3: one per iteration
    for name, gate in zip(sorted(generators), gates[:2], strict=True):  # iteration k: gate of k-1
        task = generators[name]
        report = task["inputs"]["artifacts"]["previous_gate"]["taskOutputArtifact"]
        assert report["producerTask"] == gate and report["outputArtifactKey"] == "report"
        assert report["producerTask"] in task["dependentTasks"]
        assert task["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]["producerTask"] == "base-model"
    executors = spec["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        if name.startswith("exec-self-generate"):
            assert executor["container"]["resources"]["accelerator"]["resourceCount"] == "1", name
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    generator = next(v for k, v in k8s.items() if k.startswith("exec-self-generate"))
    assert {s["secretName"] for s in generator["secretAsEnv"]} >= {"vlthinker-mlflow-client"}
