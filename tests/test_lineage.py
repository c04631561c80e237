"""Lineage: datasets pushed to the DVC remote before registration, walked back two iterations, fetched by hash."""

from __future__ import annotations

import json

import pytest
from mlflow_helpers import fake_model, mlflow_template, state_dir_from, write_eval

from vlthinker.datasets_dvc import (
    DatasetStoreError,
    dir_md5,
    fetch_dataset,
    object_url,
    push_dataset,
    remote_has,
)
from vlthinker.registry.client import Registry, RegistryError, RetryPolicy
from vlthinker.registry.lineage import fetch, format_lineage, parse_ref, walk
from vlthinker.registry.register import DatasetInput, Provenance, record_base, register_candidate
from vlthinker.sources.generate import generate_dataset
from vlthinker.state import resolve_stores


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return mlflow_template(tmp_path_factory)


def test_dir_md5_matches_dvc_and_fetch_is_byte_identical(tmp_path):
    data = generate_dataset(tmp_path / "ds", n=4, seed=5, split="train")
    remote = tmp_path / "remote"
    md5 = push_dataset(data, remote)  # push_dataset checks DVC's hash against dir_md5
    assert md5 == dir_md5(data) and remote_has(md5, remote)
    assert (remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    assert object_url(remote, md5).endswith(f"/files/md5/{md5[:2]}/{md5[2:]}")
    out = fetch_dataset(md5, tmp_path / "restored", remote)
    assert tree_bytes(out) == tree_bytes(data)
    with pytest.raises(DatasetStoreError, match="could not be fetched"):
        fetch_dataset("f" * 32 + ".dir", tmp_path / "nothing", remote)
    assert not (tmp_path / "nothing").exists()


def test_parse_ref():
    assert parse_ref("proj@champion") == ("proj", "champion", None)
    assert parse_ref("proj/3") == ("proj", None, 3)
    assert parse_ref("proj") == ("proj", "champion", None)
    with pytest.raises(RegistryError):
        parse_ref("proj/x/3")


def test_lineage_walks_two_iterations_to_the_sources_and_restores_by_hash(template, tmp_path):
    stores = resolve_stores(state_dir_from(template, tmp_path / "state"))
    registry = Registry(stores, "proj", RetryPolicy(attempts=2, backoff_s=0.01))
    gen = tmp_path / "data"
    source = generate_dataset(gen / "source", n=6, seed=0, split="train")
    heldout = generate_dataset(gen / "heldout", n=6, seed=0, split="heldout")
    sft1 = generate_dataset(gen / "sft1", n=4, seed=1, split="train")
    rl1 = generate_dataset(gen / "rl1", n=4, seed=2, split="train")
    sft2 = generate_dataset(gen / "sft2", n=4, seed=3, split="train")
    rl2 = generate_dataset(gen / "rl2", n=4, seed=4, split="train")
    held_md5 = dir_md5(heldout)

    def evaluation(name: str, k: int):
        return write_eval(tmp_path / name, [i < k for i in range(6)], md5=held_md5, dataset_dir=heldout)

    record_base(registry, evaluation("eval-base", 2), "tiny-base")
    v1 = register_candidate(
        registry,
        fake_model(tmp_path / "m1"),
        evaluation("eval1", 4),
        Provenance(iteration=1, git_commit="a" * 40, pipeline_run_id="kfp-1", config_hash="cfg"),
        [
            DatasetInput("source", path=source),
            DatasetInput("sft", path=sft1, derived_from=("source",)),
            DatasetInput("rl", path=rl1, derived_from=("source",)),
        ],
    )
    v2 = register_candidate(
        registry,
        fake_model(tmp_path / "m2"),
        evaluation("eval2", 5),
        Provenance(
            iteration=2, parent_version=v1, git_commit="b" * 40, pipeline_run_id="kfp-1", config_hash="cfg"
        ),
        [
            DatasetInput("source", md5=dir_md5(source)),  # already in the remote: referenced by hash
            DatasetInput("sft", path=sft2, derived_from=("source",)),
            DatasetInput("rl", path=rl2, derived_from=("source",)),
        ],
    )
    tree = walk(registry, f"proj/{v2}")
    assert [node["version"] for node in tree["chain"]] == [v2, v1]
    assert tree["chain"][0]["parent"] == v1 and tree["chain"][1]["parent"] is None
    roles = {node["version"]: {d["role"]: d["md5"] for d in node["datasets"]} for node in tree["chain"]}
    assert roles[v1] == {
        "source": dir_md5(source), "sft": dir_md5(sft1), "rl": dir_md5(rl1), "eval:heldout": held_md5,
    }  # fmt: skip
    assert roles[v2]["sft"] == dir_md5(sft2) and roles[v2]["source"] == dir_md5(source)
    assert [s["md5"] for s in tree["sources"]] == [dir_md5(source)]
    assert tree["base"]["model"] == "tiny-base" and tree["base"]["datasets"][0]["md5"] == held_md5
    for node in tree["chain"]:  # every recorded hash is in the remote
        assert all(remote_has(d["md5"], stores.dvc_remote) for d in node["datasets"])
    text = format_lineage(tree)
    assert f"parent: proj/{v1}" in text and "parent: the base model" in text and "base tiny-base" in text
    assert dir_md5(rl1) in text and object_url(stores.dvc_remote, dir_md5(rl1)) in text

    restored = fetch(tree, dir_md5(rl1), tmp_path / "restored-rl1")  # two iterations back
    assert tree_bytes(restored) == tree_bytes(rl1)
    with pytest.raises(RegistryError, match="not in the lineage"):
        fetch(tree, "e" * 32 + ".dir", tmp_path / "x")


def test_dataset_push_failure_registers_nothing(template, tmp_path):
    stores = resolve_stores(
        state_dir_from(template, tmp_path / "state"), dvc_remote=str(tmp_path / "file-remote")
    )
    (tmp_path / "file-remote").write_text("not a directory")
    registry = Registry(stores, "proj", RetryPolicy(attempts=1))
    data = generate_dataset(tmp_path / "ds", n=2, seed=0, split="train")
    with pytest.raises(DatasetStoreError):
        register_candidate(
            registry,
            fake_model(tmp_path / "m"),
            write_eval(tmp_path / "e", [True, False]),
            Provenance(iteration=1),
            [DatasetInput("source", path=data)],
        )
    assert registry.get_model() is None or registry.versions() == []
    with pytest.raises(DatasetStoreError, match="not in the DVC remote"):
        register_candidate(
            registry.with_model("other"),
            fake_model(tmp_path / "m"),
            write_eval(tmp_path / "e", [True, False]),
            Provenance(iteration=1),
            [DatasetInput("source", md5="d" * 32 + ".dir")],
        )


def test_cli_register_gate_status_lineage_fetch_rollback(template, tmp_path):
    from typer.testing import CliRunner

    from vlthinker.cli import app

    state = state_dir_from(template, tmp_path / "state")
    where = ["--state-dir", str(state)]
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout

    source = generate_dataset(tmp_path / "source", n=4, seed=0, split="train")
    held = generate_dataset(tmp_path / "heldout", n=6, seed=0, split="heldout")
    md5 = dir_md5(held)
    base_eval = write_eval(tmp_path / "e0", [False] * 6, md5=md5, style="direct", dataset_dir=held)
    cand_eval = write_eval(tmp_path / "e1", [True] * 6, md5=md5, dataset_dir=held)
    run("step", "record-base", "--evaluation", str(base_eval), "--model-ref", "tiny", *where)
    out = run(
        "step", "register", "--model", str(fake_model(tmp_path / "m1")), "--evaluation", str(cand_eval),
        "--iteration", "1", "--dataset", f"source={source}", "--pipeline-run-id", "kfp-7", *where,
    )  # fmt: skip
    version = int(
        out.strip()
    )  # stdout holds the version and nothing else (DVC and MLflow chatter goes elsewhere)
    assert "PROMOTE" in run("step", "gate", "--version", str(version), *where)
    status = json.loads(run("registry", "status", "--json", *where))
    assert status["champion"] == version and status["versions"][0]["decision"] == "promote"
    assert status["versions"][0]["tags"]["vlt.pipeline_run_id"] == "kfp-7"
    assert "champion" in run("registry", "status", *where)
    text = run("lineage", "vlthinker@champion", *where)
    assert dir_md5(source) in text and md5 in text
    tree = json.loads(run("lineage", f"vlthinker/{version}", "--json", *where))
    assert tree["sources"][0]["md5"] == dir_md5(source)
    run("lineage", "vlthinker@champion", "--fetch", dir_md5(source), str(tmp_path / "restored"), *where)
    assert tree_bytes(tmp_path / "restored") == tree_bytes(source)
    assert "-> none" in run("registry", "rollback", "--reason", "test", *where)
    assert json.loads(run("registry", "status", "--json", *where))["champion"] is None
