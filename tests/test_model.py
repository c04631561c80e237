"""The offline tiny VLM and the one loader: build, determinism, round trip, safety rules."""

from __future__ import annotations

import contextlib
import json
import shutil
import time

import pytest
from PIL import Image
from typer.testing import CliRunner

from vlthinker.backends.hf import SamplingParams, generate
from vlthinker.cli import app
from vlthinker.model.loader import ModelLoadError, load_model, load_processor
from vlthinker.prompts import user_message


def test_build_tiny_cli_is_deterministic(tmp_path):
    runner = CliRunner()
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        result = runner.invoke(
            app, ["model", "build-tiny", "--output", str(tmp_path / name), "--seed", str(seed)]
        )
        assert result.exit_code == 0, result.output
    weights = {name: (tmp_path / name / "model.safetensors").read_bytes() for name in "abc"}
    assert weights["a"] == weights["b"]
    assert weights["a"] != weights["c"]
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "c" / "tokenizer.json"
    ).read_bytes()


def test_standard_auto_classes_load_it(tiny_model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlthinker.model.compat import install_video_processor_shim

    install_video_processor_shim()
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    tokenizer = processor.tokenizer
    for tag in ("<think>", "</think>", "<answer>", "</answer>", "<|image_pad|>"):
        ids = tokenizer.encode(tag, add_special_tokens=False)
        assert len(ids) == 1, tag
    text = "<think>3 plus 4 is 7</think><answer>7</answer>"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_loader_round_trip_generates_text_for_an_image(tiny_model_dir):
    loaded = load_model(tiny_model_dir, device="cpu")
    image = Image.new("RGB", (112, 112), (200, 30, 30))
    prompt = user_message("How many shapes are there?")
    outputs = generate(loaded, [prompt, prompt], [image, image], SamplingParams(max_new_tokens=8))
    assert len(outputs) == 2 and all(len(o) == 1 for o in outputs)
    assert isinstance(outputs[0][0], str)
    sampled = generate(loaded, [prompt], [image], SamplingParams(max_new_tokens=8, temperature=1.0, n=3))
    assert len(sampled[0]) == 3
    # text-only prompts go through the same backend (the distillation teacher reads captions only)
    text_only = generate(
        loaded, [user_message("Hello", with_image=False)], [None], SamplingParams(max_new_tokens=4)
    )
    assert len(text_only) == 1


def test_image_becomes_sixteen_visual_tokens(tiny_model_dir):
    processor = load_processor(tiny_model_dir)
    text = processor.apply_chat_template(user_message("q"), add_generation_prompt=True, tokenize=False)
    batch = processor(text=[text], images=[Image.new("RGB", (112, 112))], return_tensors="pt")
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((batch["input_ids"] == image_token).sum()) == 16


def test_remote_code_is_never_run(tiny_model_dir, tmp_path):
    """A model directory that ships code and asks for it through auto_map is refused, code unexecuted."""
    model_dir = tmp_path / "evil"
    shutil.copytree(tiny_model_dir, model_dir)
    marker = tmp_path / "executed"
    (model_dir / "evil_model.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "evil_model.EvilModel"}
    (model_dir / "config.json").write_text(json.dumps(config))
    with contextlib.suppress(ModelLoadError, ValueError):
        load_model(model_dir, device="cpu")
    assert not marker.exists()


def test_weights_only_from_safetensors(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    model_dir = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, model_dir)
    state = load_file(model_dir / "model.safetensors")
    torch.save(state, model_dir / "pytorch_model.bin")
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="safetensors only"):
        load_model(model_dir, device="cpu")


def test_hub_id_goes_through_the_same_path_and_fails_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as err:
        load_model("Qwen/Qwen2.5-VL-7B-Instruct", device="cpu")
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in str(err.value)
    assert "hub" in str(err.value)
    assert time.monotonic() - started < 30
