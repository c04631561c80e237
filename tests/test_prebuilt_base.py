"""The base shipped with the package: the default recipe's, taken instead of pretraining, verified."""

from __future__ import annotations

import json

import pytest

from vlthinker.config import Config, load_config
from vlthinker.model import pretrain
from vlthinker.model.pretrain import (
    PROVENANCE_FILE,
    BaseReport,
    cache_key,
    pretrain_base,
    read_cached,
    ship_base,
    shipped_base,
)

SMALL = {
    "pretrain.steps": 4,
    "pretrain.batch_size": 5,
    "pretrain.n_train": 16,
    "pretrain.n_heldout": 12,
    "pretrain.log_every": 2,
    "pretrain.max_new_tokens": 6,
}
REBUILD = "vlthinker model pretrain-base --force --ship -o DIR (about 40 minutes on 2 cores)"


class Pretrained(Exception):
    """Raised by a stand-in for train_base: the code chose to pretrain."""


def refuse_to_train(config, model_dir, log):
    raise Pretrained


def test_the_default_recipe_has_its_base_shipped_and_only_that_one():
    key = cache_key(Config())
    assert key == cache_key(load_config(None, {})), "params.yaml and the code defaults give the same base"
    shipped = shipped_base(key)
    assert shipped is not None, (
        f"no shipped base for the default pretraining recipe ({key}): the recipe, the model spec or "
        f"RECIPE_VERSION changed; rebuild it with `{REBUILD}`"
    )
    directory, report = shipped
    keys = sorted(p.name for p in pretrain.PREBUILT_ROOT.iterdir() if p.is_dir())
    assert keys == [key], f"stale shipped bases (the package carries the default's only): {keys}"
    provenance = json.loads((directory / PROVENANCE_FILE).read_text())
    assert provenance["cache_key"] == key and provenance["model_sha256"] == report.model_sha256
    assert provenance["steps"] == Config().pretrain.steps and "--ship" in provenance["rebuild"]


def test_the_shipped_base_still_answers_as_its_report_says():
    """Prompts, tokenizer or generation code changed without a rebuild would show here: the report
    was measured when the base was built, this re-measures it with today's code."""
    from vlthinker.model.loader import load_model
    from vlthinker.model.pretrain import base_heldout_items, score_base

    config = Config()
    directory, report = shipped_base(cache_key(config))
    loaded = load_model(directory, device="cpu")
    accuracy, format_rate, _ = score_base(loaded, config, base_heldout_items(config))
    # greedy decoding can flip a near-tie between CPU thread counts: a few items of 600, not more
    assert abs(accuracy - report.heldout_accuracy) <= 0.02, (accuracy, report.heldout_accuracy, REBUILD)
    assert format_rate >= report.format_rate - 0.02


@pytest.fixture(scope="module")
def small_base(tmp_path_factory):
    """A 4-step base, built once for the tests below (they copy it, never change it)."""
    config = load_config(None, SMALL)
    built = tmp_path_factory.mktemp("small") / "built"
    report, cached = pretrain_base(config, built, log=lambda _: None)
    assert not cached
    return config, report, built


def test_pretrain_takes_a_shipped_base_with_that_recipe_and_caches_it(small_base, tmp_path, monkeypatch):
    config, report, built = small_base
    root = tmp_path / "prebuilt"
    target = ship_base(built, report, {"rebuild": "test"}, root=root)
    assert target == root / report.cache_key and (target / PROVENANCE_FILE).is_file()
    monkeypatch.setattr(pretrain, "PREBUILT_ROOT", root)
    monkeypatch.setattr(pretrain, "train_base", refuse_to_train)
    logs: list[str] = []
    got, cached = pretrain_base(config, tmp_path / "out", cache_dir=tmp_path / "cache", log=logs.append)
    assert cached and got.model_sha256 == report.model_sha256
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (built / "model.safetensors").read_bytes()
    assert any("shipped with vlthinker" in line for line in logs), logs
    assert read_cached(tmp_path / "cache" / "base" / report.cache_key) is not None, "copied into the cache"

    # another recipe is pretrained, not served the shipped base
    other = load_config(None, {**SMALL, "pretrain.steps": 5})
    with pytest.raises(Pretrained):
        pretrain_base(other, tmp_path / "other", log=logs.append)
    # and the knob turns the shipped base off (it is not part of the cache key)
    off = load_config(None, {**SMALL, "pretrain.use_prebuilt": False})
    assert cache_key(off) == cache_key(config)
    with pytest.raises(Pretrained):
        pretrain_base(off, tmp_path / "off", log=logs.append)


def test_a_damaged_shipped_base_is_an_error_naming_it(small_base, tmp_path, monkeypatch):
    config, report, built = small_base
    root = tmp_path / "prebuilt"
    target = ship_base(built, report, {}, root=root)
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)
    monkeypatch.setattr(pretrain, "PREBUILT_ROOT", root)
    monkeypatch.setattr(pretrain, "train_base", refuse_to_train)
    with pytest.raises(ValueError, match=r"shipped with vlthinker.*use_prebuilt=false") as caught:
        pretrain_base(config, tmp_path / "out", log=lambda _: None)
    assert str(target) in str(caught.value)
    assert not (tmp_path / "out").exists(), "nothing half-written"


def test_shipping_replaces_the_shipped_base(small_base, tmp_path):
    _, report, built = small_base
    root = tmp_path / "prebuilt"
    (root / "0123456789abcdef").mkdir(parents=True)  # an older recipe's base
    ship_base(built, report, {"rebuild": "x"}, root=root)
    assert sorted(p.name for p in root.iterdir()) == [report.cache_key]
    # shipping again (a rebuild of the same recipe) replaces it in place
    again = BaseReport.from_json({**report.to_json(), "train_seconds": 1.0})
    ship_base(built, again, {"rebuild": "y"}, root=root)
    info = json.loads((root / report.cache_key / PROVENANCE_FILE).read_text())
    assert info["rebuild"] == "y" and info["train_seconds"] == 1.0


def test_the_ship_command_records_how_the_base_was_built(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vlthinker.cli import app

    root = tmp_path / "prebuilt"
    monkeypatch.setattr(pretrain, "PREBUILT_ROOT", root)
    args = ["model", "pretrain-base", "-o", str(tmp_path / "base"), "--state-dir", str(tmp_path / "state")]
    for key, value in SMALL.items():
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(app, [*args, "--ship"])
    assert result.exit_code == 0, result.output
    key = cache_key(load_config(None, SMALL))
    info = json.loads((root / key / PROVENANCE_FILE).read_text())
    assert info["rebuild"].startswith("vlthinker model pretrain-base --force --set pretrain.steps=4")
    assert info["steps"] == 4 and info["built_at"] and "torch" in info
    assert "shipped with the package" in result.output
