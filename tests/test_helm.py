"""The Helm chart (helm/vlthinker) and the MLflow server image (mlflow/), tested offline.

No cluster and no helm binary: helm-python-sdk (the Helm v4 library) lints and renders the chart,
kubernetes-validate checks every rendered manifest against the bundled Kubernetes JSON schemas in
strict mode, and the image's entrypoint runs here with the installed MLflow.
"""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "vlthinker"
MLFLOW_DIR = ROOT / "mlflow"
DOCS = ROOT / "README.md"  # the "Deploy on Kubernetes" section
RELEASE = "vlthinker"
NAMESPACE = "vlthinker"
# The Kubernetes versions every manifest must be valid for: the DESIGN baseline and the newest
# schema set bundled with kubernetes-validate.
KUBE_VERSIONS = ("1.33.0", kubernetes_validate.latest_version())

VALUE_SETS: dict[str, dict[str, Any]] = {"default": {}} | {
    path.stem: yaml.safe_load(path.read_text()) for path in sorted((CHART / "ci").glob("*.yaml"))
}
# Environment variable names that carry credentials: they must come from a Secret (a *_PATH, *_FILE
# or *_DIR variable only says where one lives).
CREDENTIAL_ENV = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|API_KEY")
LOCATION_ENV = re.compile(r"_(PATH|FILE|DIR)$")
# scheme://user:password@host — a credential inside a URL.
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/@:'\"]+:[^\s/@'\"]+@")


@pytest.fixture(scope="module")
def chart():
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def rendered(chart) -> dict[str, list[dict[str, Any]]]:
    """Every value set rendered once: value-set name -> list of manifests."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, values in VALUE_SETS.items():
        templates = chart.render(values, name=RELEASE, namespace=NAMESPACE)
        out[name] = [
            doc
            for path, text in sorted(templates.items())
            if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text)
            if doc
        ]
    return out


@pytest.fixture(scope="module")
def raw_text(chart) -> dict[str, str]:
    return {
        name: "\n".join(chart.render(values, name=RELEASE, namespace=NAMESPACE).values())
        for name, values in VALUE_SETS.items()
    }


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in {"Deployment", "StatefulSet", "Job", "CronJob"}]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return spec.get("initContainers", []) + spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# --- the value sets -----------------------------------------------------------------------------


def test_value_sets_cover_the_deployment_shapes():
    assert {"default", "external-values", "bundled-minio-values", "cronjob-values"} <= set(VALUE_SETS)
    external = VALUE_SETS["external-values"]
    assert external["postgresql"]["bundled"] is False and external["minio"]["bundled"] is False
    assert VALUE_SETS["bundled-minio-values"]["minio"]["bundled"] is True
    assert VALUE_SETS["cronjob-values"]["pipeline"]["cronJob"]["enabled"] is True


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_lint_strict_has_no_warnings(value_set):
    report = helm_python.lint(CHART, VALUE_SETS[value_set], strict=True, kube_version="v1.33.0")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


def test_chart_packages_and_renders_from_the_archive(tmp_path, chart):
    archive = helm_python.package(CHART, destination=tmp_path)
    assert Path(archive).name == f"vlthinker-{chart.metadata['version']}.tgz"
    with helm_python.Chart.load(archive) as packaged:
        assert packaged.schema == chart.schema
        templates = packaged.render({}, name=RELEASE, namespace=NAMESPACE)
    assert "vlthinker/templates/mlflow-deployment.yaml" in templates


# --- every manifest is valid Kubernetes -----------------------------------------------------------


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_manifest_is_valid_kubernetes_in_strict_mode(rendered, value_set):
    docs = rendered[value_set]
    assert docs
    failures = []
    for doc in docs:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                failures.append(f"{doc['kind']}/{doc['metadata']['name']} @ {version}: {path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                failures.append(exc.message)
    assert failures == []
    for doc in docs:
        assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_the_validator_is_really_strict(rendered):
    """Guard: an unknown field must fail, or the test above proves nothing."""
    deployment = one(rendered["default"], "Deployment", "vlthinker-mlflow")
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {"path": "/health"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)


# --- what each value set deploys ------------------------------------------------------------------


def kinds(docs):
    return sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)


def test_default_is_the_quick_start(rendered):
    docs = rendered["default"]
    assert kinds(docs) == sorted(
        [
            "ConfigMap/vlthinker-pipeline-config",
            "ConfigMap/vlthinker-postgresql-init",
            "Deployment/vlthinker-minio",
            "Deployment/vlthinker-mlflow",
            "Job/vlthinker-submit",
            "NetworkPolicy/vlthinker-minio",
            "NetworkPolicy/vlthinker-mlflow",
            "NetworkPolicy/vlthinker-postgresql",
            "PersistentVolumeClaim/vlthinker-minio",
            "Role/vlthinker",
            "RoleBinding/vlthinker",
            "Service/vlthinker-minio",
            "Service/vlthinker-mlflow",
            "Service/vlthinker-postgresql",
            "ServiceAccount/vlthinker",
            "StatefulSet/vlthinker-postgresql",
        ]
    )
    init = one(docs, "ConfigMap", "vlthinker-postgresql-init")["data"]["10-create-auth-database.sql"]
    assert "CREATE DATABASE mlflow_auth;" in init


def test_external_stores_deploy_no_database_and_no_object_store(rendered):
    docs = rendered["external-values"]
    assert not find(docs, "StatefulSet") and not find(docs, "PersistentVolumeClaim")
    assert [d["metadata"]["name"] for d in find(docs, "Deployment")] == ["vlthinker-mlflow"]
    assert [d["metadata"]["name"] for d in find(docs, "NetworkPolicy")] == ["vlthinker-mlflow"]
    mlflow = one(docs, "Deployment", "vlthinker-mlflow")
    server = pod_spec(mlflow)["containers"][0]
    env = env_of(server)
    assert env["MLFLOW_DB_HOST"]["value"] == "vlthinker.cluster-abc123.eu-west-1.rds.amazonaws.com"
    assert env["MLFLOW_DB_SSLMODE"]["value"] == "verify-full"
    assert env["MLFLOW_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "rds-mlflow", "key": "pass"}
    assert env["MLFLOW_AUTH_DB_NAME"]["value"] == "mlflow"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"] == "s3://acme-vlthinker-mlflow/prod/artifacts"
    assert env["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"
    # IRSA: no keys anywhere, no endpoint override, no bucket creation.
    assert "AWS_ACCESS_KEY_ID" not in env and "MLFLOW_S3_ENDPOINT_URL" not in env
    assert "initContainers" not in pod_spec(mlflow)
    assert server["image"].startswith("registry.example.com/ml/vlthinker-mlflow@sha256:")
    ingress = one(docs, "Ingress", "vlthinker-mlflow")
    assert ingress["spec"]["tls"][0]["secretName"] == "mlflow-example-com-tls"
    sa = one(docs, "ServiceAccount", "vlthinker")
    assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]
    peers = one(docs, "NetworkPolicy", "vlthinker-mlflow")["spec"]["ingress"][0]["from"]
    namespaces = [
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in peers
        if "namespaceSelector" in p
    ]
    assert namespaces == ["kubeflow", "ml-team", "ingress-nginx"]


def test_bundled_minio_with_external_postgres(rendered):
    docs = rendered["bundled-minio-values"]
    assert not find(docs, "StatefulSet") and not find(docs, "Job")
    minio = one(docs, "Deployment", "vlt-dev-minio")
    env = env_of(pod_spec(minio)["containers"][0])
    assert env["MINIO_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "dev-minio",
        "key": "root-password",
    }
    assert one(docs, "PersistentVolumeClaim", "vlt-dev-minio")["spec"]["storageClassName"] == "fast-ssd"
    mlflow = one(docs, "Deployment", "vlt-dev-mlflow")
    init = {c["name"]: c for c in pod_spec(mlflow)["initContainers"]}
    assert init["create-bucket"]["args"] == ["create-bucket"]
    assert env_of(init["create-bucket"])["VLTHINKER_S3_BUCKET"]["value"] == "vlthinker-dev"
    server_env = env_of(pod_spec(mlflow)["containers"][0])
    assert (
        server_env["MLFLOW_S3_ENDPOINT_URL"]["value"]
        == "http://vlt-dev-minio.vlthinker.svc.cluster.local:9000"
    )
    assert server_env["MLFLOW_ARTIFACTS_DESTINATION"]["value"] == "s3://vlthinker-dev"
    assert server_env["MLFLOW_AUTH_ENABLED"]["value"] == "false"
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in server_env
    assert pod_spec(mlflow)["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    # The raw YAML config is mounted verbatim.
    config = one(docs, "ConfigMap", "vlt-dev-pipeline-config")["data"]["config.yaml"]
    assert config.strip() == VALUE_SETS["bundled-minio-values"]["pipeline"]["configYaml"].strip()


def test_cronjob_submits_on_schedule_with_kfp_tokens(rendered):
    docs = rendered["cronjob-values"]
    assert not find(docs, "NetworkPolicy") and not find(docs, "ServiceAccount") and not find(docs, "Role")
    cron = one(docs, "CronJob", "vlthinker-scheduled")
    assert cron["spec"]["schedule"] == "30 2 * * 1"
    assert cron["spec"]["timeZone"] == "Europe/Paris"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = pod_spec(cron)
    assert spec["serviceAccountName"] == "vlthinker-runner"
    submit = spec["containers"][0]
    assert submit["args"][submit["args"].index("--run-name") + 1] == "weekly"
    assert submit["args"][submit["args"].index("--host") + 1] == "https://kubeflow.example.com/pipeline"
    env = env_of(submit)
    assert env["KFP_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "kfp-api-token", "key": "token"}
    assert env["KF_PIPELINES_SA_TOKEN_PATH"]["value"] == "/var/run/secrets/kubeflow/pipelines/token"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "huggingface"
    projected = next(v for v in spec["volumes"] if v["name"] == "kfp-token")["projected"]
    assert projected["sources"][0]["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    # The one-off Job is still there (post-install hook), next to the CronJob.
    assert find(docs, "Job", "vlthinker-submit")


# --- the MLflow server ----------------------------------------------------------------------------


def test_mlflow_server_deployment(rendered, chart):
    docs = rendered["default"]
    deployment = one(docs, "Deployment", "vlthinker-mlflow")
    spec = pod_spec(deployment)
    server = spec["containers"][0]
    assert server["image"] == f"ghcr.io/vlthinker/vlthinker-mlflow:{chart.metadata['appVersion']}"
    assert server["args"] == ["server"]
    env = env_of(server)
    assert env["MLFLOW_AUTH_ENABLED"]["value"] == "true"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "vlthinker-mlflow-auth",
        "key": "admin-password",
    }
    assert (
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "vlthinker-mlflow-auth"
    )
    assert env["MLFLOW_DB_HOST"]["value"] == "vlthinker-postgresql.vlthinker.svc.cluster.local"
    assert env["MLFLOW_WORKERS"]["value"] == "2"
    assert env["MLFLOW_SERVE_ARTIFACTS"]["value"] == "true"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"] == "s3://mlflow/artifacts"
    for probe in ("livenessProbe", "readinessProbe"):
        assert server[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert server["resources"]["requests"] and server["resources"]["limits"]
    assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_allowed_hosts_accept_the_cluster_urls_and_nothing_else(rendered, value_set):
    """Checked with MLflow's own matcher: the Host header of the in-cluster tracking URI passes."""
    from mlflow.server.security_utils import is_allowed_host_header

    docs = rendered[value_set]
    deployment = next(d for d in find(docs, "Deployment") if d["metadata"]["name"].endswith("-mlflow"))
    allowed = env_of(pod_spec(deployment)["containers"][0])["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    tracking_uri = next(
        d for d in find(docs, "ConfigMap") if d["metadata"]["name"].endswith("pipeline-config")
    )["data"]["mlflow-tracking-uri"]
    service = tracking_uri.split("//")[1].split(".")[0]
    for host in (
        urlsplit(tracking_uri).netloc,
        f"{service}:5000",
        f"{service}.{NAMESPACE}:5000",
        "localhost:5000",
        "127.0.0.1:5000",
    ):
        assert is_allowed_host_header(allowed, host), host
    for host in ("evil.example", "evil.example:5000", "10.0.0.7:5000"):
        assert not is_allowed_host_header(allowed, host), host
    assert "*" not in allowed
    ingress = VALUE_SETS[value_set].get("mlflow", {}).get("ingress", {})
    if ingress.get("enabled"):
        assert is_allowed_host_header(allowed, ingress["host"])
    for extra in VALUE_SETS[value_set].get("mlflow", {}).get("allowedHosts", []):
        assert extra in allowed


# --- the submit Job and the pipeline config --------------------------------------------------------


def test_submit_job_compiles_then_submits(rendered, chart):
    docs = rendered["default"]
    job = one(docs, "Job", "vlthinker-submit")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never"
    (compile_step,) = spec["initContainers"]
    (submit,) = spec["containers"]
    image = f"ghcr.io/vlthinker/vlthinker-cpu:{chart.metadata['appVersion']}"
    assert compile_step["image"] == submit["image"] == image
    assert compile_step["command"] == submit["command"] == ["vlthinker"]
    assert compile_step["args"] == [
        "compile",
        "--config",
        "/etc/vlthinker/config.yaml",
        "--output",
        "/work/pipeline.yaml",
    ]
    assert submit["args"] == [
        "submit",
        "--host",
        "http://ml-pipeline.kubeflow.svc.cluster.local:8888",
        "--package",
        "/work/pipeline.yaml",
        "--experiment",
        "vlthinker",
        "--run-name",
        "vlthinker-r1",
    ]
    config_volume = next(v for v in spec["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["name"] == "vlthinker-pipeline-config"
    mounts = {m["name"]: m["mountPath"] for m in submit["volumeMounts"]}
    assert mounts["config"] == "/etc/vlthinker"
    env = env_of(submit)
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://vlthinker-mlflow.vlthinker.svc.cluster.local:5000"
    for name, key in [("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password")]:
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "vlthinker-mlflow-client", "key": key}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "vlthinker-s3"
    config = one(docs, "ConfigMap", "vlthinker-pipeline-config")["data"]["config.yaml"]
    assert yaml.safe_load(config) == chart.values["pipeline"]["config"]


def test_pipeline_config_values_reach_the_configmap(chart):
    values = {"pipeline": {"config": {"project": "demo", "seed": 3, "data": {"n_train": 10}}}}
    text = chart.render(values, name=RELEASE, namespace=NAMESPACE)[
        "vlthinker/templates/pipeline-configmap.yaml"
    ]
    config = yaml.safe_load(text)["data"]["config.yaml"]
    assert yaml.safe_load(config) == values["pipeline"]["config"]


# --- no secret ever reaches a manifest --------------------------------------------------------------


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_no_secret_value_in_any_manifest(rendered, raw_text, value_set):
    docs = rendered[value_set]
    assert not find(docs, "Secret"), "the chart must reference Secrets, never create them"
    for workload in workloads(docs):
        for container in containers(workload):
            for var in container.get("env", []):
                if CREDENTIAL_ENV.search(var["name"]) and not LOCATION_ENV.search(var["name"]):
                    assert "value" not in var, f"{workload['metadata']['name']}: {var['name']} is inlined"
                    assert "secretKeyRef" in var["valueFrom"], var["name"]
            assert "envFrom" not in container
            for arg in container.get("args", []) + container.get("command", []):
                assert not URL_WITH_PASSWORD.search(arg), arg
    assert not URL_WITH_PASSWORD.search(raw_text[value_set])
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            for key, value in doc["data"].items():
                assert not CREDENTIAL_ENV.search(key.upper().replace("-", "_")), key
                assert not re.search(r"(?i)(password|secret_access_key)\s*[:=]\s*\S", value), key


def test_postgres_and_minio_take_their_credentials_from_secrets(rendered):
    docs = rendered["default"]
    postgres = env_of(pod_spec(one(docs, "StatefulSet", "vlthinker-postgresql"))["containers"][0])
    assert postgres["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "vlthinker-postgres",
        "key": "password",
    }
    assert postgres["POSTGRES_USER"]["valueFrom"]["secretKeyRef"] == {
        "name": "vlthinker-postgres",
        "key": "username",
    }
    minio = env_of(pod_spec(one(docs, "Deployment", "vlthinker-minio"))["containers"][0])
    assert minio["MINIO_ROOT_USER"]["valueFrom"]["secretKeyRef"] == {
        "name": "vlthinker-s3",
        "key": "access-key-id",
    }


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_pods_run_unprivileged(rendered, value_set):
    for workload in workloads(rendered[value_set]):
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["limits"]["memory"], name
            assert not container["image"].endswith(":latest"), container["image"]


def test_rbac_is_minimal(rendered):
    role = one(rendered["default"], "Role", "vlthinker")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["vlthinker-pipeline-config"],
            "verbs": ["get"],
        }
    ]
    sa = one(rendered["default"], "ServiceAccount", "vlthinker")
    assert sa["automountServiceAccountToken"] is False


def test_network_policies_isolate_the_stores(rendered):
    docs = rendered["default"]
    postgres = one(docs, "NetworkPolicy", "vlthinker-postgresql")["spec"]
    (rule,) = postgres["ingress"]
    assert rule["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "vlthinker",
                    "app.kubernetes.io/instance": "vlthinker",
                    "app.kubernetes.io/component": "mlflow",
                }
            }
        }
    ]
    mlflow = one(docs, "NetworkPolicy", "vlthinker-mlflow")["spec"]
    assert mlflow["policyTypes"] == ["Ingress"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}}} in mlflow[
        "ingress"
    ][0]["from"]


# --- the schema rejects bad values ------------------------------------------------------------------

BAD_VALUES = {
    "inlined-db-password": ({"postgresql": {"password": "hunter2"}}, "password"),
    "inlined-admin-password": ({"mlflow": {"auth": {"adminPassword": "hunter2"}}}, "adminPassword"),
    "inlined-s3-secret": ({"artifacts": {"s3": {"secretAccessKey": "hunter2"}}}, "secretAccessKey"),
    "inlined-credential-env": (
        {"pipeline": {"extraEnv": [{"name": "KFP_TOKEN", "value": "hunter2"}]}},
        "extraEnv",
    ),
    "inlined-mlflow-env": (
        {"mlflow": {"extraEnv": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]}},
        "extraEnv",
    ),
    "env-both-value-and-ref": (
        {"mlflow": {"extraEnv": [{"name": "A", "value": "x", "valueFrom": {}}]}},
        "extraEnv",
    ),
    "credentials-in-kfp-url": ({"pipeline": {"kfp": {"host": "http://u:p@ml-pipeline:8888"}}}, "host"),
    "credentials-in-s3-url": ({"artifacts": {"s3": {"endpointUrl": "http://u:p@minio:9000"}}}, "endpointUrl"),
    "unknown-top-level-key": ({"mlfow": {}}, "mlfow"),
    "latest-tag": ({"mlflow": {"image": {"tag": "latest"}}}, "tag"),
    "bad-digest": ({"pipeline": {"image": {"digest": "sha256:abc"}}}, "digest"),
    "workers-zero": ({"mlflow": {"workers": 0}}, "workers"),
    "workers-not-int": ({"mlflow": {"workers": "four"}}, "workers"),
    "bad-permission": ({"mlflow": {"auth": {"defaultPermission": "ADMIN"}}}, "defaultPermission"),
    "allow-all-hosts": ({"mlflow": {"allowedHosts": ["*"]}}, "allowedHosts"),
    "external-postgres-without-host": ({"postgresql": {"bundled": False}}, "host"),
    "auth-without-secret": ({"mlflow": {"auth": {"existingSecret": ""}}}, "existingSecret"),
    "minio-without-secret": ({"artifacts": {"s3": {"existingSecret": ""}}}, "existingSecret"),
    "ingress-without-host": ({"mlflow": {"ingress": {"enabled": True}}}, "host"),
    "bad-cron": ({"pipeline": {"cronJob": {"enabled": True, "schedule": "every sunday"}}}, "schedule"),
    "bad-bucket": ({"artifacts": {"bucket": "My_Bucket"}}, "bucket"),
    "bad-sslmode": ({"postgresql": {"sslMode": "on"}}, "sslMode"),
    "bad-secret-name": ({"postgresql": {"existingSecret": "Not A Name"}}, "existingSecret"),
    "bad-port": ({"mlflow": {"port": 70000}}, "port"),
    "root-user": ({"mlflow": {"podSecurityContext": {"runAsNonRoot": True, "runAsUser": 0}}}, "runAsUser"),
    "privilege-escalation": (
        {"pipeline": {"securityContext": {"allowPrivilegeEscalation": True}}},
        "allowPrivilegeEscalation",
    ),
    "bad-resource-quantity": ({"mlflow": {"resources": {"limits": {"memory": "lots"}}}}, "memory"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(chart, case):
    values, where = BAD_VALUES[case]
    with pytest.raises(helm_python.HelmValuesError) as excinfo:
        chart.validate_schema(values)
    assert where in str(excinfo.value)
    with pytest.raises(helm_python.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_schema_accepts_the_value_sets(chart, value_set):
    chart.validate_schema(VALUE_SETS[value_set])


def test_schema_is_portable_draft_07(chart):
    """Helm 3 (gojsonschema) and Helm 4 (santhosh-tekuri) both read draft-07; a second validator agrees."""
    schema = chart.schema
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    for name, values in VALUE_SETS.items():
        errors = [e.message for e in validator.iter_errors(chart.merge_values(values))]
        assert errors == [], name
    for case, (values, _) in BAD_VALUES.items():
        assert list(validator.iter_errors(chart.merge_values(values))), case


def test_schema_forbids_unknown_keys_everywhere(chart):
    """Every object in the schema that lists properties closes itself (or is a free-form k8s field)."""
    free_form = {
        "config",
        "valueFrom",
        "affinity",
        "podSecurityContext",
        "securityContext",
        "extraMlflowPeers",
        "tolerations",
        "global",
    }

    def walk(node: Any, key: str = "") -> list[str]:
        open_objects = []
        if isinstance(node, dict):
            closed = node.get("additionalProperties") is False
            if node.get("type") == "object" and "properties" in node and key not in free_form and not closed:
                open_objects.append(key)
            for child_key, child in node.items():
                open_objects += walk(child, child_key)
        elif isinstance(node, list):
            for child in node:
                open_objects += walk(child, key)
        return open_objects

    assert walk(chart.schema) == []


# --- the MLflow image -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (MLFLOW_DIR / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_dockerfile_is_pinned_non_root_and_healthchecked(chart):
    instructions = dockerfile_instructions()
    (base,) = [rest for instruction, rest in instructions if instruction == "FROM"]
    assert re.fullmatch(
        r"[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)(@sha256:[a-f0-9]{64})?|[\w./-]+@sha256:[a-f0-9]{64}", base
    ), f"base image not pinned: {base}"
    users = [rest for instruction, rest in instructions if instruction == "USER"]
    assert users, "no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"} and (not user.isdigit() or int(user) >= 1000)
    (healthcheck,) = [rest for instruction, rest in instructions if instruction == "HEALTHCHECK"]
    assert "/health" in healthcheck
    (entrypoint,) = [rest for instruction, rest in instructions if instruction == "ENTRYPOINT"]
    assert "vlthinker-mlflow-entrypoint" in entrypoint
    # The chart runs the container as the image's user.
    assert chart.values["mlflow"]["podSecurityContext"]["runAsUser"] == int(user)
    requirements = [
        line.strip()
        for line in (MLFLOW_DIR / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert requirements and all(re.fullmatch(r"[\w.-]+(\[[\w,-]+\])?==[\w.]+", r) for r in requirements)
    assert any(r.startswith("psycopg[binary]==3.") for r in requirements), "the entrypoint's driver"
    mlflow_pin = next(r for r in requirements if r.startswith("mlflow"))
    assert mlflow_pin == f"mlflow[auth]=={chart.metadata['annotations']['vlthinker.io/mlflow-version']}"
    for name in ("entrypoint.sh", "basic_auth.ini.template", "requirements.txt"):
        assert (MLFLOW_DIR / name).is_file()
    assert os.access(MLFLOW_DIR / "entrypoint.sh", os.X_OK)


def test_mlflow_directory_does_not_shadow_mlflow():
    assert not list(MLFLOW_DIR.rglob("__init__.py"))
    assert not list(MLFLOW_DIR.rglob("*.py"))
    import mlflow

    assert Path(mlflow.__file__).resolve().parent != MLFLOW_DIR.resolve()


TRICKY_PASSWORD = "p%a:s/s@w#rd ?&=1"


def run_entrypoint(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "MLFLOW_AUTH_TEMPLATE": str(MLFLOW_DIR / "basic_auth.ini.template"),
        "VLTHINKER_MLFLOW_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    return subprocess.run(
        ["sh", str(MLFLOW_DIR / "entrypoint.sh"), *args],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def mlflow_auth_config_reader():
    """MLflow's own ``read_auth_config``, loaded without the auth app (which needs Flask-WTF)."""
    import mlflow

    path = Path(mlflow.__file__).parent / "server" / "auth" / "config.py"
    spec = importlib.util.spec_from_file_location("_mlflow_auth_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_auth_config


def test_entrypoint_composes_the_store_uris_without_leaking_the_password(tmp_path, monkeypatch):
    from sqlalchemy.engine import make_url

    read_auth_config = mlflow_auth_config_reader()

    result = run_entrypoint(
        tmp_path,
        "print-config",
        "--expose-prometheus",
        "/tmp/metrics",
        MLFLOW_DB_HOST="db.example.internal",
        MLFLOW_DB_PORT="5433",
        MLFLOW_DB_NAME="mlflow",
        MLFLOW_DB_USER="mlflow@corp",
        MLFLOW_DB_PASSWORD=TRICKY_PASSWORD,
        MLFLOW_DB_SSLMODE="require",
        MLFLOW_AUTH_DB_NAME="mlflow_auth",
        MLFLOW_ARTIFACTS_DESTINATION="s3://bucket/artifacts",
        MLFLOW_AUTH_ADMIN_PASSWORD="admin-" + TRICKY_PASSWORD,
        MLFLOW_FLASK_SERVER_SECRET_KEY="flask-key",
        MLFLOW_SERVER_ALLOWED_HOSTS="mlflow.example.com,mlflow.example.com:*",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "command: mlflow server --expose-prometheus /tmp/metrics --app-name basic-auth" in out
    assert "allowed hosts: mlflow.example.com,mlflow.example.com:*" in out
    for secret in (TRICKY_PASSWORD, "p%25a", "admin-", "flask-key"):
        assert secret not in out
    ini = tmp_path / "runtime" / "basic_auth.ini"
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
    assert "admin-" not in ini.read_text() and "flask-key" not in ini.read_text()
    # MLflow's own reader gets back a URI whose password is the original, byte for byte.
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ini))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_USERNAME", raising=False)
    config = read_auth_config()
    assert config.default_permission == "READ"
    url = make_url(config.database_uri)
    # psycopg 3 named explicitly: SQLAlchemy 2.1's default, and the driver the image installs.
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql+psycopg",
        "db.example.internal",
        5433,
        "mlflow_auth",
    )
    assert (url.username, url.password) == ("mlflow@corp", TRICKY_PASSWORD)
    assert url.query == {"sslmode": "require"}


def test_entrypoint_without_auth_needs_no_auth_secrets(tmp_path):
    result = run_entrypoint(
        tmp_path,
        "print-config",
        MLFLOW_AUTH_ENABLED="false",
        MLFLOW_BACKEND_STORE_URI="sqlite:///tmp/x.db",
        MLFLOW_ARTIFACTS_DESTINATION="s3://bucket",
    )
    assert result.returncode == 0, result.stderr
    assert "command: mlflow server\n" in result.stdout
    assert not (tmp_path / "runtime").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MLFLOW_ARTIFACTS_DESTINATION": "s3://b", "MLFLOW_AUTH_ENABLED": "false"}, "MLFLOW_DB_HOST"),
        (
            {"MLFLOW_DB_HOST": "db", "MLFLOW_DB_USER": "u", "MLFLOW_DB_PASSWORD": "p"},
            "MLFLOW_ARTIFACTS_DESTINATION",
        ),
        (
            {
                "MLFLOW_DB_HOST": "db",
                "MLFLOW_DB_USER": "u",
                "MLFLOW_DB_PASSWORD": "p",
                "MLFLOW_ARTIFACTS_DESTINATION": "s3://b",
            },
            "MLFLOW_AUTH_ADMIN_PASSWORD",
        ),
        (
            {
                "MLFLOW_DB_HOST": "db",
                "MLFLOW_DB_USER": "u",
                "MLFLOW_DB_PASSWORD": "p",
                "MLFLOW_ARTIFACTS_DESTINATION": "s3://b",
                "MLFLOW_AUTH_ADMIN_PASSWORD": "a",
            },
            "MLFLOW_FLASK_SERVER_SECRET_KEY",
        ),
        (
            {
                "MLFLOW_DB_HOST": "db",
                "MLFLOW_DB_USER": "u",
                "MLFLOW_ARTIFACTS_DESTINATION": "s3://b",
                "MLFLOW_AUTH_ENABLED": "false",
            },
            "MLFLOW_DB_PASSWORD",
        ),
    ],
)
def test_entrypoint_refuses_an_incomplete_environment(tmp_path, env, message):
    result = run_entrypoint(tmp_path, "print-config", **env)
    assert result.returncode != 0
    assert message in result.stderr


# --- the deployment guide matches the chart -----------------------------------------------------------


def test_docs_create_every_secret_the_default_values_reference(rendered, chart):
    text = re.sub(r"\\\n", " ", DOCS.read_text())
    created: dict[str, set[str]] = {}
    for match in re.finditer(
        r"create secret generic (\S+)((?:\s+--from-literal=[\w.-]+=(?:\"[^\"]*\"|\S+))+)", text
    ):
        created.setdefault(match.group(1), set()).update(
            re.findall(r"--from-literal=([\w.-]+)=", match.group(2))
        )
    referenced: set[tuple[str, str]] = set()
    for workload in workloads(rendered["default"]):
        for container in containers(workload):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add((ref["name"], ref["key"]))
    assert referenced
    missing = sorted((name, key) for name, key in referenced if key not in created.get(name, set()))
    assert missing == []
    kfp_version = chart.metadata["annotations"]["vlthinker.io/kubeflow-pipelines-version"]
    assert f"PIPELINE_VERSION={kfp_version}" in text
    assert "kustomize/cluster-scoped-resources?ref=$PIPELINE_VERSION" in text
    assert "helm install vlthinker helm/vlthinker" in text
