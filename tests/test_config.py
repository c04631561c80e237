"""Typed config: defaults, the shipped files, and errors that name key, value and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlthinker.config import Config, load_config, parse_override
from vlthinker.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_equal_params_yaml():
    """params.yaml is the laptop default: it spells out exactly what the code defaults to."""
    assert load_config(ROOT / "params.yaml") == Config()


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads(path):
    config = load_config(path)
    assert config.project


def test_paper_recipe_uses_hub_model():
    config = load_config(ROOT / "recipes" / "qwen2.5-vl-7b.yaml")
    assert config.model.base == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert config.model.trust_remote_code is False


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_key_value_and_file(tmp_path):
    path = write(tmp_path, "pretrain:\n  stepz: 5\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "pretrain.stepz" in message and "5" in message


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'tranining'"):
        load_config(write(tmp_path, "tranining: {}\n"))


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("pretrain:\n  steps: -3\n", "pretrain.steps", "-3"),
        ("pretrain:\n  learning_rate: fast\n", "pretrain.learning_rate", "fast"),
        ("data:\n  image_size: 20\n", "data.image_size", "20"),
        ("data:\n  tasks: []\n", "data.tasks", "[]"),
        ("model:\n  torch_dtype: float8\n", "model.torch_dtype", "float8"),
        ("project: 'has space'\n", "project", "has space"),
    ],
)
def test_bad_values_name_key_and_value(tmp_path, text, key, value):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert key in message and value in message and str(path) in message


def test_cross_field_rule(tmp_path):
    with pytest.raises(ConfigError, match="num_attention_heads"):
        load_config(write(tmp_path, "model:\n  tiny:\n    hidden_size: 100\n    num_attention_heads: 3\n"))


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_overrides_are_typed_and_validated(tmp_path):
    config = load_config(
        None, dict([parse_override("pretrain.steps=7"), parse_override("data.tasks=[count]")])
    )
    assert config.pretrain.steps == 7 and config.data.tasks == ["count"]
    with pytest.raises(ConfigError, match=r"pretrain\.steps"):
        load_config(None, {"pretrain.steps": "many"})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("pretrain.steps")


def test_content_hash_tracks_sections():
    a, b = Config(), load_config(None, {"pretrain.steps": 5})
    assert a.content_hash() != b.content_hash()
    assert a.content_hash("data") == b.content_hash("data")
